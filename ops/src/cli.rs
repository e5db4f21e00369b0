//! The `liandong` command line (docs/commands.md): flags and dispatch. Each command's work lives
//! in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "liandong",
    version,
    about = "Liandong (联动): a federated petition case system"
)]
pub struct Cli {
    /// The federation folder made by `federation init`.
    #[arg(long, global = true, default_value = "./federation")]
    pub dir: PathBuf,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the signed-in officer's token is kept (default `DIR/session.token`).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a federation from the official division codes.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Start every host in the background; return once every office has a leader.
    Up(UpArgs),
    /// Stop every host (graceful, SIGKILL after a grace period).
    Down,
    /// Offices, leaders, replicas and hosts.
    Status,
    /// Register and handle cases.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Operator drills: crash, pause and restart replicas; cut and heal offices' links.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Issue a supervision order (督办) from an ancestor office on a case below it.
    Supervise(SuperviseArgs),
    /// The supervision orders an office has issued, with answers and overdue flags.
    Orders(OrdersArgs),
    /// Cases in a supervising office's subtree, from its index.
    Query(Box<QueryArgs>),
    /// Figures for a supervising office's subtree: totals, by status, level and category,
    /// overdue, backlog, satisfaction, per office.
    Stats(StatsArgs),
    /// Membership changes: add a replica (learner catch-up first) or remove one (refused if it
    /// would lose quorum).
    #[command(subcommand)]
    Replica(crate::replica_cmd::ReplicaCommand),
    /// Backups of an office: save one from the running office, restore one into a fresh
    /// replica set.
    #[command(subcommand)]
    Snapshot(crate::snapshot_cmd::SnapshotCommand),
    /// Restart hosts one at a time (all, or one office's), moving leadership away first and
    /// never below a majority, while officers keep working.
    RollingRestart(crate::rolling::RollingArgs),
    /// Host certificates: rotate them while the federation runs, revoke, list with expiry.
    #[command(subcommand)]
    Cert(crate::cert_cmd::CertCommand),
    /// Check the federation's invariants on the live system, reading every replica in pages.
    Verify(crate::verify::VerifyArgs),
    /// Sign an officer in at its office; the token is kept in `DIR/session.token` (0600) or
    /// `--token-file`.
    Login(LoginArgs),
    /// Forget the signed-in officer's token.
    Logout,
    /// An office's officer accounts (the signed-in officer must be the office's admin).
    #[command(subcommand)]
    Officer(OfficerCommand),
    /// The office's audit log (the signed-in officer must be its auditor).
    Audit(AuditArgs),
    /// The logs of the hosts carrying an office, merged in time order (`--follow` keeps
    /// printing).
    Logs(crate::logs_cmd::LogsArgs),
    /// Run one host in the foreground (what `up` starts; the same as `liandong-node`).
    #[command(hide = true)]
    Node(NodeArgs),
    /// The office's departments (一窗受理): add, list, disable; per-department figures.
    #[command(subcommand)]
    Department(crate::desk_cmd::DepartmentCommand),
    /// Joint meetings (联席会议): hold one (decisions become department tasks), list, show.
    #[command(subcommand)]
    Meeting(crate::desk_cmd::MeetingCommand),
    /// Intake points (代办中心, 代办站, 代办点): add, list, and the cases filed at or below one.
    #[command(subcommand)]
    IntakePoint(crate::desk_cmd::IntakePointCommand),
    /// Proxy agents (代办员): add, list, and the cases one filed.
    #[command(subcommand)]
    Proxy(crate::desk_cmd::ProxyCommand),
    /// Joint video reception sessions (视频联动接访): schedule, answer, book, record, show.
    #[command(subcommand)]
    Session(crate::session_cmd::SessionCommand),
    /// Escalating notices (三级抄告): the ages at which an unresolved case is copied up.
    #[command(subcommand)]
    Notice(crate::notice_cmd::NoticeCommand),
    /// The notices this office received from its subtree, newest first (its worklist).
    Notices(crate::notice_cmd::ListArgs),
    /// Red cards (红牌): those this office earned and those its subtree earned on its orders,
    /// with counts per office and department.
    RedCards(crate::notice_cmd::ListArgs),
    /// Scheduled supervision reports (日监测、周调度、月通报) the office made of its subtree: list
    /// them, show one as JSON, CSV or HTML.
    #[command(subcommand)]
    Report(crate::report_cmd::ReportCommand),
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(long)]
    pub office: String,
    #[arg(long)]
    pub user: String,
    /// Read the password from this file's first line (else from standard input).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum OfficerCommand {
    /// A new account with one or more roles (`--role registrar --role handler`, or
    /// `--role registrar,handler`): registrar, handler, leader, supervisor, auditor, admin.
    Add(OfficerAddArgs),
    /// The office's accounts and their roles.
    List(OfficeArg),
    /// Disable an account: its tokens stop working on every replica at once.
    Disable(OfficerUserArgs),
    Enable(OfficerUserArgs),
    /// A new password: the account's tokens stop working.
    ResetPassword(OfficerPasswordArgs),
}

#[derive(Args, Debug)]
pub struct OfficeArg {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct OfficerAddArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub user: String,
    #[arg(long = "role", required = true, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// The password's file (its first line); without it a random password is made and printed
    /// once.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct OfficerUserArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub user: String,
}

#[derive(Args, Debug)]
pub struct OfficerPasswordArgs {
    #[arg(long)]
    pub office: Option<String>,
    #[arg(long)]
    pub user: String,
    /// The new password's file; without it a random password is made and printed once.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
    /// Only entries about this case.
    #[arg(long = "case")]
    pub case_id: Option<String>,
    /// Only entries of this user (`operator:NAME` for an operator).
    #[arg(long)]
    pub user: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The host's TOML config, written by `liandong federation init`.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum FederationCommand {
    /// Build the manifest, host configs and ports for a region of the official division codes.
    Init(InitArgs),
    /// Make one host's bundle again (a new key and certificate from the CA): the folder to copy
    /// to its machine and run with `liandong-node --config BUNDLE/host.toml`.
    Bundle(BundleArgs),
    /// Add an office (on new hosts) to a running federation: issues the new hosts' bundles and
    /// sends the new directory of offices to every running host.
    AddOffice(AddOfficeArgs),
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The host, as the manifest names it.
    #[arg(long)]
    pub host: String,
    /// Where to write the bundle (default: DIR/bundles/HOST).
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct AddOfficeArgs {
    /// The new office's division code; its parent must be in the federation.
    #[arg(long)]
    pub office: String,
    /// A new host carrying the office, once per replica (with its --address, in order).
    #[arg(long, required = true)]
    pub host: Vec<String>,
    /// The IP address of each --host, in the same order.
    #[arg(long, required = true)]
    pub address: Vec<String>,
    /// The site the new hosts run at (default: the office's code).
    #[arg(long)]
    pub site: Option<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// A province (2 digits), city (4) or county (6) division code, e.g. 5306 (Zhaotong).
    #[arg(long, required_unless_present = "inventory")]
    pub region: Option<String>,
    /// Keep only the first N children of every office (a small federation for tests).
    #[arg(long)]
    pub max_children: Option<usize>,
    /// Replicas per office: 1, 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub replicas: u8,
    /// Run the deadline clocks this many times faster than the wall clock.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// First of the consecutive 127.0.0.1 ports given to the hosts (3 per host).
    #[arg(long, default_value_t = 17_100)]
    pub base_port: u16,
    /// Replace an existing federation folder's manifest and configs (data is kept).
    #[arg(long)]
    pub force: bool,
    /// Where the offices' SMS to petitioners go: `file:PATH` (one JSON line per message) or
    /// `webhook:http://HOST:PORT/PATH` (an SMS platform). Without it, notices wait unsent.
    #[arg(long, value_name = "file:PATH|webhook:URL")]
    pub sms_gateway: Option<String>,
    /// Where the results of cases the 12345 hotline handed over are posted back to the hotline
    /// platform: `file:PATH` or `webhook:http://HOST:PORT/PATH`. Without it, they wait unsent.
    #[arg(long, value_name = "file:PATH|webhook:URL")]
    pub hotline_callback: Option<String>,
    /// Hosts, their sites, IP addresses and offices from an inventory (TOML, or JSON for a
    /// `.json` file; docs/sites.md): the CA holder's folder plus one bundle per host in
    /// `bundles/HOST/`, each to be copied to its machine.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<std::path::PathBuf>,
    /// The folder to make (default: --dir).
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Give up waiting for leaders after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
}

#[derive(Subcommand, Debug)]
pub enum CaseCommand {
    /// Register a petition (登记).
    File(Box<FileArgs>),
    /// Show a case with its history (linearizable read).
    Show(ShowArgs),
    /// Accept a case for handling (受理).
    Accept(OfficerArgs),
    /// Decline with the statutory route the petitioner should take.
    Decline(DeclineArgs),
    /// Extend the 60-day handling limit once, by at most 30 days, with a reason.
    Extend(ExtendArgs),
    /// Reply with an opinion.
    Reply(ReplyArgs),
    /// Record the petitioner's satisfaction.
    Evaluate(EvaluateArgs),
    /// Grade a major case A/B/C with the four fixed points (四定).
    Grade(GradeArgs),
    /// Transfer (转送) the case to the competent office: ownership moves.
    Transfer(TransferArgs),
    /// Assign (交办) the case down to a descendant office, with a report-back limit.
    Assign(AssignArgs),
    /// Return (退回) a transferred or assigned case within 5 working days of receipt.
    Return(ReturnArgs),
    /// Ask for review (复查), or re-review (复核) of a review: goes up one level.
    RequestReview(CaseArg),
    /// Answer the supervision order on a case in writing.
    AnswerSupervision(AnswerArgs),
    /// Give a case to a lead department and cooperating departments (集成联办), each with a
    /// task and a clock in working days; the reply waits for the lead's answer.
    Route(crate::desk_cmd::RouteArgs),
    /// A department's answer to its task on a case.
    TaskAnswer(crate::desk_cmd::TaskAnswerArgs),
    /// Record the follow-up (回访) a dissatisfied evaluation opened: what the petitioner said,
    /// what was done. Due within 5 working days of the evaluation.
    FollowUp(FollowUpArgs),
}

#[derive(Args, Debug)]
pub struct FollowUpArgs {
    pub case_id: String,
    /// What the follow-up found (up to 2,000 characters).
    #[arg(long)]
    pub note: String,
}

#[derive(Args, Debug)]
pub struct CaseArg {
    pub case_id: String,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    pub case_id: String,
    #[arg(long)]
    pub to: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct AssignArgs {
    pub case_id: String,
    #[arg(long)]
    pub to: String,
    /// Report-back limit, 1 to 90 days.
    #[arg(long)]
    pub due_days: u32,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct ReturnArgs {
    pub case_id: String,
    #[arg(long)]
    pub reason: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct AnswerArgs {
    pub case_id: String,
    #[arg(long)]
    pub text: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    pub case_id: String,
    /// The issuing office: an ancestor of the office holding the case (default, and the only
    /// one allowed: the signed-in supervisor's).
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub due_days: u32,
    #[arg(long)]
    pub text: String,
}

#[derive(Args, Debug)]
pub struct OrdersArgs {
    /// The issuing office (default: the signed-in officer's).
    #[arg(long)]
    pub office: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The supervising office (default, and the only one allowed: the signed-in officer's).
    #[arg(long = "as")]
    pub as_office: Option<String>,
    /// Rank the offices of the subtree by the scorecard (考核) formula, each term shown.
    #[arg(long, conflicts_with = "trend")]
    pub scorecard: bool,
    /// Counts per day, week or month (registered, replied, became overdue).
    #[arg(long, value_name = "day|week|month")]
    pub trend: Option<String>,
    /// The trend's first day (YYYY-MM-DD, China time; default: 29 days, 11 weeks or 11 months
    /// before --to).
    #[arg(long, requires = "trend")]
    pub from: Option<String>,
    /// The trend's last day (YYYY-MM-DD, China time; default: today).
    #[arg(long, requires = "trend")]
    pub to: Option<String>,
    /// Ask the subtree itself (scatter-gather down the tree) instead of the office's counters;
    /// subtrees that do not answer within the deadline are counted from the index, listed in
    /// `unreachable`, and the answer is `partial`.
    #[arg(long)]
    pub fresh: bool,
    /// The fresh answer's deadline (default 1,000 ms, at most 2,000 ms).
    #[arg(long, requires = "fresh")]
    pub deadline_ms: Option<u32>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The supervising office (default, and the only one allowed: the signed-in officer's).
    #[arg(long = "as")]
    pub as_office: Option<String>,
    /// Narrow to one office of the subtree.
    #[arg(long)]
    pub office: Option<String>,
    /// A status word, or a group: open, closed, overdue.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub overdue: bool,
    #[arg(long)]
    pub category: Option<String>,
    /// Major cases of grade A, B or C.
    #[arg(long)]
    pub grade: Option<String>,
    /// Cases held by offices of this level: province, city, county, township.
    #[arg(long)]
    pub level: Option<String>,
    /// Registered on or after this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub registered_from: Option<String>,
    /// Registered on or before this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub registered_to: Option<String>,
    /// One petitioner's cases across the subtree (repeat petitions): the petitioner key that
    /// `case show` and `query` print.
    #[arg(long)]
    pub petitioner_key: Option<String>,
    /// Cases per page (at most 10,000): a longer answer gives `next_cursor`.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// The next page: the previous answer's `next_cursor`.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Ask the subtree itself (scatter-gather down the tree) instead of the office's index;
    /// subtrees that do not answer within the deadline are served from the index, listed in
    /// `unreachable`, and the answer is `partial`.
    #[arg(long)]
    pub fresh: bool,
    /// The fresh query's deadline (default 1,000 ms, at most 2,000 ms).
    #[arg(long, requires = "fresh")]
    pub deadline_ms: Option<u32>,
    /// The cases proxy agents filed at this intake point of the office or below it, with their
    /// progress (the same as `intake-point cases POINT`).
    #[arg(long)]
    pub intake_point: Option<String>,
    /// Cases that came in by this channel: visit, letter, phone, online, video.
    #[arg(long)]
    pub channel: Option<String>,
    /// Cases whose running limit falls on or after this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub due_from: Option<String>,
    /// Cases whose running limit falls on or before this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub due_to: Option<String>,
    /// Cases whose running limit falls within the next N days (from now).
    #[arg(long, value_name = "N", conflicts_with_all = ["due_from", "due_to"])]
    pub due_within: Option<u32>,
    /// Cases replied on or after this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub replied_from: Option<String>,
    /// Cases replied on or before this day (YYYY-MM-DD, China time).
    #[arg(long)]
    pub replied_to: Option<String>,
    /// Cases whose running limit reached a warning (50 % or more, overdue included).
    #[arg(long)]
    pub warned: bool,
    /// Skip-level (越级) cases: filed two or more levels above the office of the place.
    #[arg(long)]
    pub skip_level: bool,
    /// The answer's order: registered, due or changed (default: case id). A cursor is good only
    /// for the sort that gave it.
    #[arg(long)]
    pub sort: Option<String>,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    #[arg(long)]
    pub office: String,
    /// visit | letter | phone | online | video
    #[arg(long)]
    pub channel: String,
    /// The petitioner's document number: an 18-character resident ID number, or the number of
    /// the document `--id-type` names.
    #[arg(long)]
    pub petitioner_id: String,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub category: String,
    #[arg(long)]
    pub summary: String,
    #[arg(long)]
    pub phone: Option<String>,
    /// The petitioner's address (住址), one line of at most 256 bytes, e.g. "昭通市昭阳区…":
    /// personal data, sealed at rest like the name and the phone.
    #[arg(long)]
    pub address: Option<String>,
    /// Division code of the place the matter concerns.
    #[arg(long)]
    pub location: Option<String>,
    /// Ignored (kept for old scripts): the first-contact officer (首办责任人) the office
    /// records is the signed-in officer.
    #[arg(long, default_value = "registrar")]
    pub officer: String,
    /// A unique id for this request: retrying with the same id registers the case once.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Filed by this proxy agent (代办员) for the petitioner; needs `--consent`.
    #[arg(long)]
    pub proxy: Option<String>,
    /// The petitioner's recorded consent to the proxy: what was signed, when, where the form is.
    #[arg(long)]
    pub consent: Option<String>,
    /// The joint reception session the case is registered in (`liandong session list`).
    #[arg(long)]
    pub session: Option<String>,
    /// The petitioner's identity document: resident (default) | passport | hk-macao (港澳居民来往内地通行证)
    /// | taiwan (台湾居民来往大陆通行证) | foreign-permanent (外国人永久居留身份证).
    #[arg(long)]
    pub id_type: Option<String>,
    /// The petitioner's nationality, ISO 3166 alpha-3 (e.g. GBR), for a foreign document.
    #[arg(long)]
    pub nationality: Option<String>,
    /// A co-petitioner of a group petition (集体访), repeatable: `[TYPE:]ID:NAME[:PHONE[:NATIONALITY]]`,
    /// e.g. `passport:E12345678:John Smith:+4479460000:GBR` (TYPE as --id-type, default resident), or
    /// `@FILE` with one such line per co-petitioner (blank lines and `#` comments skipped).
    #[arg(long = "co-petitioner")]
    pub co_petitioners: Vec<String>,
    /// Which petitioner represents the group, 1-based (1, the default: the main petitioner;
    /// 2: the first co-petitioner, ...). The representative receives the SMS.
    #[arg(long)]
    pub representative: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub case_id: String,
    /// Read this replica's own copy (no leader involved; may lag).
    #[arg(long)]
    pub replica: Option<u64>,
    /// Why the petitioner's personal data is read (required of an auditor; in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct OfficerArgs {
    pub case_id: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct DeclineArgs {
    pub case_id: String,
    /// litigation | arbitration | admin-review | discipline
    #[arg(long)]
    pub route: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct ExtendArgs {
    pub case_id: String,
    #[arg(long)]
    pub days: u32,
    #[arg(long)]
    pub reason: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct ReplyArgs {
    pub case_id: String,
    /// support | explain | not-support
    #[arg(long)]
    pub opinion: String,
    #[arg(long)]
    pub text: String,
    /// Ignored (kept for old scripts): the office records the signed-in officer.
    #[arg(long, default_value = "handler")]
    pub officer: String,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    pub case_id: String,
    /// satisfied | basic | dissatisfied
    #[arg(long)]
    pub satisfaction: String,
}

#[derive(Args, Debug)]
pub struct GradeArgs {
    pub case_id: String,
    /// A | B | C
    #[arg(long)]
    pub grade: String,
    #[arg(long)]
    pub leader: String,
    #[arg(long)]
    pub department: String,
    #[arg(long)]
    pub plan: String,
    /// The fixed deadline, RFC 3339 (e.g. 2026-12-31T18:00:00+08:00).
    #[arg(long)]
    pub deadline: String,
}

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// SIGKILL the host carrying an office's leader (or replica N).
    Kill(DrillTarget),
    /// Start again the hosts of an office's replicas that are down or whose replica stopped on a
    /// storage failure (or replica N's).
    Restart(DrillTarget),
    /// SIGSTOP the host carrying an office's leader (or replica N).
    Pause(DrillTarget),
    /// SIGCONT paused hosts of an office (or replica N's).
    Resume(DrillTarget),
    /// Cut an office off every other office (its own Raft group stays whole); with `--to`, cut
    /// only its link to that office (both ways, or with `--one-way` only from it to that office).
    Partition(PartitionArgs),
    /// Remove every fault: office cuts, host link faults and clock skews.
    Heal,
    /// Fault the link from one host to another (raft replication and federation deliveries sent
    /// that way): cut it, drop requests, delay them. With none of --cut, --drop and --delay-ms,
    /// the link's faults are removed.
    Link(LinkArgs),
    /// Jump a running host's clock by N milliseconds (forward or back; 0 removes the skew).
    Skew(SkewArgs),
    /// A scripted drill under load, with a report (JSON, and HTML under DIR/run/).
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// kill-leader-loop | partition-county | partition-flapping | pause-replica |
    /// rolling-restart-under-load | clock-skew | disk-full
    #[arg(long)]
    pub scenario: String,
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Concurrent clients filing cases during the drill.
    #[arg(long, default_value_t = 8)]
    pub clients: u64,
}

#[derive(Args, Debug)]
pub struct PartitionArgs {
    #[arg(long)]
    pub office: String,
    /// Cut only the link between --office and this office.
    #[arg(long)]
    pub to: Option<String>,
    /// With --to: cut only deliveries from --office to --to (the other way keeps flowing).
    #[arg(long, requires = "to")]
    pub one_way: bool,
}

#[derive(Args, Debug)]
pub struct LinkArgs {
    /// The sending host (as named in the manifest, e.g. by `liandong status`).
    #[arg(long)]
    pub from_host: String,
    /// The receiving host.
    #[arg(long)]
    pub to_host: String,
    /// Fail every request sent this way (the receiving host can still send the other way).
    #[arg(long)]
    pub cut: bool,
    /// Probability, 0 to 1, that a request (or its reply) is lost.
    #[arg(long)]
    pub drop: Option<f64>,
    /// Delay every request sent this way, in milliseconds (at most 10,000).
    #[arg(long)]
    pub delay_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct SkewArgs {
    /// The host whose clock jumps.
    #[arg(long)]
    pub host: String,
    /// The offset from the host's wall clock, in milliseconds (negative: behind).
    #[arg(long, allow_hyphen_values = true)]
    pub ms: i64,
}

#[derive(Args, Debug)]
pub struct DrillTarget {
    #[arg(long)]
    pub office: String,
    /// Target the office's current leader.
    #[arg(long, conflicts_with = "replica")]
    pub leader: bool,
    /// Target replica N (1-based).
    #[arg(long)]
    pub replica: Option<u64>,
}
