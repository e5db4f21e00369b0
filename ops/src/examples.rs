//! One worked example per command, shown at the end of its `--help`. Kept in one table so that a
//! test can hold every command to having one, and every example to parsing as the command it
//! illustrates.

use clap::{Command, CommandFactory};

use crate::cli::Cli;

/// (command path, example lines). Case ids, codes and hosts are those of the Zhaotong demo
/// (`federation init --region 5306 --max-children 2`).
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "federation init",
        "liandong federation init --region 5306 --max-children 2 --replicas 3\nliandong federation init --region 5306 --max-children 2 --sms-gateway file:/var/lib/liandong/sms.jsonl\nliandong federation init --region 5306 --hotline-callback webhook:http://10.0.0.5:8080/liandong/result\nliandong federation init --inventory zhaotong.toml --out /srv/liandong-ca",
    ),
    ("up", "liandong up --timeout-seconds 120"),
    (
        "federation bundle",
        "liandong federation bundle --host zhaoyang-2\nliandong federation bundle --host zhaoyang-2 --out /media/usb/zhaoyang-2",
    ),
    (
        "federation add-office",
        "liandong federation add-office --office 530602003 --site taiping --host taiping-1 --address 10.2.3.1 --host taiping-2 --address 10.2.3.2 --host taiping-3 --address 10.2.3.3",
    ),
    ("down", "liandong down"),
    ("status", "liandong status\nliandong --json status"),
    (
        "case file",
        "liandong case file --office 530602001 --channel visit --petitioner-id 530602198001010012 --name 张三 --category housing --summary \"Repairs promised in May not done\"\nliandong case file --office 530602001 --channel letter --petitioner-id 530602198001010012 --name 张三 --phone 13800000000 --address \"昭通市昭阳区凤凰街道海楼路 88 号\" --category housing --summary \"Roof leaks\"\nliandong case file --office 530602 --channel visit --petitioner-id 530602198001010012 --name 张三 --category housing --summary \"Roof leaks\" --proxy wang --consent \"signed consent form 2026-12-06, kept at Daguan point\"\nliandong case file --office 530602001 --channel video --petitioner-id 530602198001010012 --name 张三 --category land --summary \"Received in the joint session\" --session 5306-S1\nliandong case file --office 530602001 --channel visit --id-type passport --petitioner-id E12345678 --nationality GBR --name \"John Smith\" --category land --summary \"Flooded fields\" --co-petitioner 530602198001010012:张三:13800000000 --co-petitioner hk-macao:H12345678:陈大文 --representative 2",
    ),
    ("case show", "liandong case show 530602001-2026-000001"),
    ("case accept", "liandong case accept 530602001-2026-000001"),
    ("case decline", "liandong case decline 530602001-2026-000001 --route litigation"),
    ("case extend", "liandong case extend 530602001-2026-000001 --days 30 --reason \"Survey of the site needed\""),
    (
        "case reply",
        "liandong case reply 530602001-2026-000001 --opinion support --text \"Repairs scheduled for next week\"",
    ),
    ("case evaluate", "liandong case evaluate 530602001-2026-000001 --satisfaction satisfied"),
    (
        "case grade",
        "liandong case grade 530602001-2026-000001 --grade A --leader 王局长 --department housing --plan \"Site visit, then repairs\" --deadline 2026-12-31T18:00:00+08:00",
    ),
    ("case transfer", "liandong case transfer 530602001-2026-000001 --to 530602"),
    ("case assign", "liandong case assign 5306-2026-000001 --to 530621001 --due-days 15"),
    ("case return", "liandong case return 5306-2026-000001 --reason \"Not this township's matter\""),
    ("case request-review", "liandong case request-review 530602001-2026-000001"),
    (
        "case answer-supervision",
        "liandong case answer-supervision 5306-2026-000001 --text \"Site visit done; compensation paid\"",
    ),
    (
        "case follow-up",
        "liandong case follow-up 530602-2026-000012 --note \"Called the petitioner; the repair is scheduled for Friday\"",
    ),
    ("drill kill", "liandong drill kill --office 5306 --leader"),
    ("drill restart", "liandong drill restart --office 5306"),
    ("drill pause", "liandong drill pause --office 5306 --replica 2"),
    ("drill resume", "liandong drill resume --office 5306 --replica 2"),
    ("drill partition", "liandong drill partition --office 530621"),
    ("drill heal", "liandong drill heal"),
    ("drill link", "liandong drill link --from-host h5306-1 --to-host h5306-2 --drop 0.25 --delay-ms 20"),
    ("drill skew", "liandong drill skew --host h5306-1 --ms 5000"),
    ("drill run", "liandong drill run --scenario kill-leader-loop --seconds 60 --clients 8"),
    ("supervise", "liandong supervise 5306-2026-000001 --due-days 10 --text \"Report what was paid\""),
    ("orders", "liandong orders --office 5306"),
    ("query", "liandong query --as 5306 --status overdue --fresh\nliandong --json query --as 5306 --level township --limit 100\nliandong query --as 530602 --intake-point mishixiang\nliandong query --as 5306 --channel visit --warned --sort due\nliandong query --as 5306 --due-within 7\nliandong query --as 5306 --skip-level --replied-from 2026-11-01 --replied-to 2026-11-30"),
    ("stats", "liandong stats --as 5306\nliandong stats --as 5306 --scorecard\nliandong stats --as 5306 --trend week --from 2026-09-07 --to 2026-11-29\nliandong stats --as 5306 --fresh --deadline-ms 1500"),
    ("replica add", "liandong replica add --office 530602 --timeout-seconds 60"),
    ("replica remove", "liandong replica remove --office 530602 --replica 4"),
    ("snapshot save", "liandong snapshot save --office 5306 --out 5306-2026-12-06.backup"),
    ("snapshot restore", "liandong snapshot restore --office 5306 --from 5306-2026-12-06.backup"),
    ("cert rotate", "liandong cert rotate --revoke-old\nliandong cert rotate --host h2"),
    ("cert revoke", "liandong cert revoke --serial 3a:0f:9c:11:54:e2:07:b8"),
    ("cert list", "liandong cert list"),
    ("rolling-restart", "liandong rolling-restart\nliandong rolling-restart --office 530602"),
    ("verify", "liandong verify"),
    ("login", "liandong login --office 530602 --user clerk --password-file clerk.password"),
    ("logout", "liandong logout"),
    ("officer add", "liandong officer add --user clerk --role registrar,handler --password-file clerk.password"),
    ("officer list", "liandong officer list"),
    ("officer disable", "liandong officer disable --user clerk"),
    ("officer enable", "liandong officer enable --user clerk"),
    ("officer reset-password", "liandong officer reset-password --user clerk --password-file new.password"),
    ("audit", "liandong audit --case 530602001-2026-000001 --limit 50"),
    (
        "logs",
        "liandong logs --office 530602 --lines 50\nliandong logs --office 530602 --follow --grep trace_id=530602001-2026-000001",
    ),
    ("department add", "liandong department add --code housing --name 住建"),
    ("department list", "liandong department list"),
    ("department disable", "liandong department disable --code housing"),
    ("department stats", "liandong department stats\nliandong --json department stats"),
    (
        "case route",
        "liandong case route 530602-2026-000001 --lead housing --cooperate land,labour --due-days 10 --text \"Roof repairs promised in May\"",
    ),
    (
        "case task-answer",
        "liandong case task-answer 530602-2026-000001 --department housing --text \"Repairs scheduled for 12 December\"",
    ),
    (
        "meeting hold",
        "liandong meeting hold --cases 530602-2026-000001,530602-2026-000002 --attendees housing,land,judicial --minutes @minutes.txt --decision \"530602-2026-000002=land:15:Survey the plot and report\"",
    ),
    ("meeting list", "liandong meeting list"),
    ("meeting show", "liandong meeting show 530602-m1"),
    (
        "intake-point add",
        "liandong intake-point add --code mishixiang --name 米市巷街道代办站 --kind street --parent gongshu\nliandong intake-point add --code daguan --name 大关社区代办点 --kind community --parent mishixiang",
    ),
    ("intake-point list", "liandong intake-point list"),
    ("intake-point cases", "liandong intake-point cases mishixiang"),
    ("proxy add", "liandong proxy add --code wang --name 王代办 --point daguan --officer wang"),
    ("proxy list", "liandong proxy list"),
    ("proxy cases", "liandong proxy cases wang"),
    (
        "session schedule",
        "liandong session schedule --date 2026-12-09 --start 09:00 --end 11:30 --invite 530602,530621,530602001 --leader \"王市长\" --slots 20",
    ),
    ("session answer", "liandong session answer 5306-S1 --accept --leader \"张县长\"\nliandong session answer 5306-S1 --decline --leader \"李县长\""),
    ("session book", "liandong session book 5306-S1 --petitioner-id 530602198001010012 --name \"陈七\""),
    ("session recording", "liandong session recording 5306-S1 --file /srv/media/2026-12-09-jiefang.mp4"),
    ("session show", "liandong session show 5306-S1"),
    ("session list", "liandong session list"),
    (
        "notice policy",
        "liandong notice policy --office 530602 --ages 30,60,90\nliandong notice policy --office 530602\nliandong notice policy --office 530602 --off",
    ),
    ("notices", "liandong notices --office 5306\nliandong --json notices --office 5306 --limit 200"),
    ("red-cards", "liandong red-cards --office 5306"),
    (
        "report list",
        "liandong report list --office 5306\nliandong --json report list --office 5306 --kind weekly",
    ),
    (
        "report show",
        "liandong report show --office 5306 --kind daily --format csv\nliandong report show --office 5306 --kind monthly --period 2026-11 --format html --out 5306-2026-11.html",
    ),
];

/// The command line's definition with each command's example at the end of its help.
pub fn command() -> Command {
    let mut command = Cli::command();
    for (path, example) in EXAMPLES {
        let indented: Vec<String> = example.lines().map(|l| format!("  {l}")).collect();
        let help = format!("Example:\n{}", indented.join("\n"));
        command = with_after_help(command, &path.split(' ').collect::<Vec<_>>(), help);
    }
    command
}

fn with_after_help(command: Command, path: &[&str], help: String) -> Command {
    match path {
        [] => command.after_help(help),
        [first, rest @ ..] => {
            let rest = rest.to_vec();
            command.mut_subcommand(*first, move |sub| with_after_help(sub, &rest, help))
        }
    }
}

/// Splits one example line into words: spaces separate, double quotes group.
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    /// Every visible command without subcommands of its own, by path.
    fn leaves(command: &Command, prefix: &str, out: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let path = format!("{prefix}{}", sub.get_name()).trim().to_string();
            if sub.has_subcommands() {
                leaves(sub, &format!("{path} "), out);
            } else {
                out.push(path);
            }
        }
    }

    /// The subcommand path `matches` selected.
    fn selected(matches: &clap::ArgMatches) -> String {
        let mut path = Vec::new();
        let mut at = matches;
        while let Some((name, sub)) = at.subcommand() {
            path.push(name.to_string());
            at = sub;
        }
        path.join(" ")
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let command = command();
        let mut paths = Vec::new();
        leaves(&command, "", &mut paths);
        assert!(paths.len() > 30, "{paths:?}");
        let missing: Vec<&String> = paths
            .iter()
            .filter(|path| !EXAMPLES.iter().any(|(p, _)| p == path))
            .collect();
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
        let mut command = command;
        command.build();
        let help = command
            .find_subcommand_mut("case")
            .and_then(|case| case.find_subcommand_mut("file"))
            .expect("case file")
            .render_help()
            .to_string();
        assert!(
            help.contains("Example:\n  liandong case file --office"),
            "{help}"
        );
    }

    #[test]
    fn every_example_parses_as_the_command_it_illustrates() {
        for (path, example) in EXAMPLES {
            for line in example.lines() {
                let argv = words(line);
                assert_eq!(argv[0], "liandong", "{line}");
                let matches = command()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(&selected(&matches), path, "{line}");
                Cli::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
    }

    #[test]
    fn quoted_words_stay_together() {
        assert_eq!(
            words("liandong case reply X --text \"a b  c\" --opinion support"),
            [
                "liandong",
                "case",
                "reply",
                "X",
                "--text",
                "a b  c",
                "--opinion",
                "support"
            ]
        );
    }
}
