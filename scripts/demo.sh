#!/usr/bin/env bash
# The demo: a small real region — Zhaotong city (昭通市), two of its counties and two townships of
# each, every office a 3-replica Raft group, 9 host processes on 127.0.0.1 — walked through the
# federation's main job: file at a township, escalate a review to the county, assign from the city
# down and answer its supervision order, cut a county off and heal it (every message applied
# exactly once), SIGKILL leaders under load (nothing acknowledged lost), stop.
#
# Ports: 36 consecutive ports from LIANDONG_DEMO_PORT (default 17100). Everything runs in a
# temporary folder, removed on success and kept (with the hosts' logs) on failure. No host
# process is left behind, whether the demo succeeds, fails or is interrupted.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins
LIANDONG="${CARGO_TARGET_DIR:-target}/debug/liandong"
BASE_PORT="${LIANDONG_DEMO_PORT:-17100}"
# 9 hosts, 3 ports each (raft, officer API and federation, metrics).
PORT_COUNT=36
# How long a step waits for the federation to reach what it shows.
WAIT_SECONDS=60
WORK="$(mktemp -d)"
DIR="$(cd "$WORK" && pwd -P)/federation"
STEP="setting up"
FAILED_REASON_GIVEN=0
START_SECONDS=$SECONDS

ld() { "$LIANDONG" --dir "$DIR" "$@"; }
step() {
  STEP="$1"
  printf '\n== %s\n' "$1"
}
say() { printf '   %s\n' "$@"; }
# Stops the demo with a reason (the exit trap stops the hosts).
fail() {
  echo "demo FAILED ($STEP): $*" >&2
  FAILED_REASON_GIVEN=1
  exit 1
}

# Pids of this demo's host processes: their command line names a config under $DIR/hosts/.
host_pids() {
  local cmdline pid
  for cmdline in /proc/[0-9]*/cmdline; do
    pid="${cmdline#/proc/}"
    pid="${pid%/cmdline}"
    # A process may end between the listing and the read: its cmdline is then gone.
    if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -qF -- "$DIR/hosts/"; then
      echo "$pid"
    fi
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -f "$DIR/manifest.json" ]; then
    ld down >/dev/null 2>&1 || true
    # Whatever `down` could not stop (a host paused, or started by a drill cut short).
    local pid
    for pid in $(host_pids); do
      kill -CONT "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  if [ "$status" -eq 0 ] || [ ! -f "$DIR/manifest.json" ]; then
    rm -rf "$WORK"
  fi
  if [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then
    echo "demo interrupted ($STEP); every host stopped" >&2
  elif [ "$status" -ne 0 ] && [ "$FAILED_REASON_GIVEN" = 0 ]; then
    echo "demo FAILED ($STEP): a command exited with status $status (its reason is above)" >&2
  fi
  if [ -d "$WORK" ]; then
    echo "demo: the federation folder and the hosts' logs are kept in $DIR" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Signs in an officer at office $1 with every role but admin, as `federation init` lets an office
# start: its initial admin (password in $DIR/secrets/$1/admin.password, 0600) signs in and adds
# the officer, who then signs in. Its token is kept in $WORK/$1.token.
sign_in() {
  local office="$1"
  local admin="$WORK/$office-admin.token" password="$WORK/$office.password"
  ld --token-file "$admin" login --office "$office" --user admin \
    --password-file "$DIR/secrets/$office/admin.password" >/dev/null
  head -c 18 /dev/urandom | base64 >"$password"
  ld --token-file "$admin" officer add --office "$office" --user "clerk-$office" \
    --role registrar,handler,leader,supervisor,auditor --password-file "$password" >/dev/null
  ld --token-file "$WORK/$office.token" login --office "$office" --user "clerk-$office" \
    --password-file "$password" >/dev/null
}
# Runs liandong as the officer signed in at office $1.
at() {
  local office="$1"
  shift
  ld --token-file "$WORK/$office.token" "$@"
}

# The first `"NAME":value` of the one-line JSON on stdin (a string without its quotes).
field() {
  grep -o "\"$1\":\(\"[^\"]*\"\|[^,}]*\)" | head -n 1 | sed 's/^"[^"]*"://; s/^"//; s/"$//' || true
}

# Runs the command until it succeeds, for at most WAIT_SECONDS; then fails the step with WHAT.
wait_until() {
  local what="$1"
  shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not happen within ${WAIT_SECONDS}s"
    sleep 0.2
  done
}

# The case id a `case file --office OFFICE` printed (the first word of its text), filed by the
# officer of OFFICE.
file_case() {
  local output
  output="$(at "$2" case file "$@")" || return 1
  echo "${output%% *}"
}

# The first line of `case show` as office $2 holds case $1: "ID at HOLDER: STATUS (...)".
case_line() { at "$2" case show "$1" | head -n 1; }
holder_is() { case_line "$1" "$2" | grep -qF " at $2: "; }
city_index_has() { at 5306 --json query | grep -qF "\"case_id\":\"$1\""; }
order_answered() { at 5306 orders | grep -F "$1" | grep -q "answered by "; }
outboxes_empty() { ! ld --json status | grep -q '"outbox_pending":[1-9]'; }
# The review case (kind review) the county registered for original case $1.
review_case_of() {
  local id
  for id in $(at 530602 --json query --office 530602 | grep -o '"case_id":"[^"]*"' | cut -d'"' -f4); do
    if at 530602 --json case show "$id" | grep -qF "\"kind\":{\"of\":\"$1\",\"type\":\"review\"}"; then
      echo "$id"
      return 0
    fi
  done
  return 1
}

step "a federation for Zhaotong city (5306): the city, 2 counties, 2 townships each"
for ((port = BASE_PORT; port < BASE_PORT + PORT_COUNT; port++)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is in use: choose a free range of $PORT_COUNT ports with LIANDONG_DEMO_PORT"
  fi
done
ld federation init --region 5306 --max-children 2 --replicas 3 --base-port "$BASE_PORT" >/dev/null
ld up >/dev/null
say "9 host processes started, each with its own RocksDB; every office is a 3-replica Raft group" \
  "with a leader, so losing any one host loses no office:"
ld status | sed 's/^/     /'

step "people: officers sign in at their own office; every call is checked and audited"
for office in 5306 530602 530602001 530621 530621001; do sign_in "$office"; done
say "Each office's initial admin (its password in secrets/CODE/admin.password, 0600) added an" \
  "officer, who signed in: a token for 8 hours, verified by every replica of that office."
REGISTRAR_PASSWORD="$WORK/registrar.password"
head -c 18 /dev/urandom | base64 >"$REGISTRAR_PASSWORD"
ld --token-file "$WORK/530602001-admin.token" officer add --office 530602001 --user desk \
  --role registrar --password-file "$REGISTRAR_PASSWORD" >/dev/null
ld --token-file "$WORK/desk.token" login --office 530602001 --user desk \
  --password-file "$REGISTRAR_PASSWORD" >/dev/null
DESK_CASE="$(ld --token-file "$WORK/desk.token" case file --office 530602001 --channel visit \
  --petitioner-id 530602198501010019 --name 赵六 --category land --summary "A fence moved" \
  --officer "中纪委 (fake)")"
DESK_CASE="${DESK_CASE%% *}"
ld --token-file "$WORK/desk.token" --json case show "$DESK_CASE" | grep -qF '"first_officer":"desk"' ||
  fail "the history of $DESK_CASE does not name the signed-in officer 'desk'"
if REFUSED="$(ld --token-file "$WORK/desk.token" case accept "$DESK_CASE" 2>&1)"; then
  fail "a registrar accepted a case"
fi
say "A registrar filed $DESK_CASE (the history names 'desk', not the '中纪委 (fake)' it claimed)" \
  "and may not accept it: ${REFUSED#liandong: }"
if REFUSED="$(at 530602 query --as 5306 2>&1)"; then
  fail "a county officer queried the city"
fi
say "A county's supervisor reads only its own subtree: ${REFUSED#liandong: }"

step "a petition filed at a township (登记)"
PETITION="$(file_case --office 530602001 --channel visit --petitioner-id 530602198001010012 \
  --name 张三 --category housing --location 530602001 --summary "The roof of the rented flat leaks")"
say "$PETITION registered at 530602001 凤凰街道, on its own replicas: the township owns the case."
if at 530602001 case reply "$PETITION" --opinion explain --text "too early" >/dev/null 2>&1; then
  fail "a reply before acceptance was accepted"
fi
say "A reply before acceptance is refused: the statute's order (受理 before 答复) is enforced."
at 530602001 case accept "$PETITION" >/dev/null
at 530602001 case reply "$PETITION" --opinion explain --text "Repairs are the landlord's duty; we told him." >/dev/null
wait_until "the city's index showing $PETITION" city_index_has "$PETITION"
say "Accepted and replied; the city's index already lists it (a summary, no personal data)," \
  "so a supervisor sees the township's work without asking it."

step "a review requested: it escalates to the county (复查)"
at 530602001 case request-review "$PETITION" >/dev/null
wait_until "a review case at the county 530602 for $PETITION" review_case_of "$PETITION"
REVIEW="$(review_case_of "$PETITION")"
say "The petitioner disagreed: the county 530602 昭阳区 registered review case $REVIEW," \
  "linked to $PETITION (a review of it); the county has 30 days to decide."
at 530602 case show "$REVIEW" | sed 's/^/     /'

step "a walk-in at the city, assigned down to a township (交办), supervised from the city (督办)"
WALK_IN="$(file_case --office 5306 --channel visit --petitioner-id 530621199006200038 \
  --name 李四 --category land --location 530621001 --summary "Land compensation not paid")"
at 5306 case assign "$WALK_IN" --to 530621001 --due-days 15 >/dev/null
wait_until "the handoff of $WALK_IN to 530621001" holder_is "$WALK_IN" 530621001
say "$WALK_IN skipped two levels; the city assigned it to 530621001 文屏街道, which now owns it" \
  "(the city keeps a forwarding stub: at no moment can two offices change the case)."
wait_until "the city's index showing $WALK_IN at 530621001" \
  sh -c "'$LIANDONG' --dir '$DIR' --token-file '$WORK/5306.token' --json query --office 530621001 | grep -qF '\"case_id\":\"$WALK_IN\"'"
at 5306 supervise "$WALK_IN" --from 5306 --due-days 10 --text "Report what was paid, in 10 days" >/dev/null
at 530621001 case answer-supervision "$WALK_IN" --text "Site visit done; compensation paid on Monday" >/dev/null
wait_until "the answer to the city's order on $WALK_IN" order_answered "$WALK_IN"
say "The city issued a supervision order; the township answered it; the city sees the answer:"
at 5306 orders | sed 's/^/     /'

step "a county cut off (drill partition): both sides keep working"
ld drill partition --office 530621 >/dev/null
CUT_FILED="$(file_case --office 530621 --channel letter --petitioner-id 530621197503150028 \
  --name 王五 --category water --location 530621002 --summary "The village well has been dry since spring")"
# A second later, so the county's registration is the earlier one (the primary).
sleep 1
CITY_FILED="$(file_case --office 5306 --channel visit --petitioner-id 530621197503150028 \
  --name 王五 --category water --location 530621002 --summary "Walked to the city: the village well is dry")"
say "530621 鲁甸县 lost every federation link; it still registered $CUT_FILED on its own quorum," \
  "and the same petitioner walked to the city, which registered $CITY_FILED."
say "What the county sent meanwhile waits in its outbox, never dropped:"
ld status | grep -E '^ *530621 ' | sed 's/^/     /'
city_index_has "$CUT_FILED" && fail "the city's index has $CUT_FILED while the county is cut off"
AS_OF="$(at 5306 --json query | grep -o '"as_of":{[^}]*}' | field 530621)"
say "The city's index does not list $CUT_FILED yet; query's watermark says its view of 530621" \
  "dates from ${AS_OF:-never}, so a supervisor knows how old it is."
ld drill heal >/dev/null
wait_until "the city's index showing $CUT_FILED after the heal" city_index_has "$CUT_FILED"
wait_until "every outbox empty (quiescence)" outboxes_empty
say "Healed: the outboxes drained in order and the city's index caught up."
wait_until "liandong verify passing" ld verify
ld verify | sed 's/^/     /'
say "verify: every message was applied exactly once, one owner per case, indexes equal the owners'" \
  "truth, hash chains intact on every replica."
REPEAT="$(at 5306 --json query | grep -o "\"case_id\":\"$CITY_FILED\"[^}]*" | field repeat_of)"
[ "$REPEAT" = "$CUT_FILED" ] || fail "the city's case $CITY_FILED is not marked a repeat of $CUT_FILED (repeat_of: ${REPEAT:-none})"
say "The city's query marks $CITY_FILED a repeat of $CUT_FILED (same petitioner, same matter):" \
  "the two registrations made on both sides of the cut are linked, the earlier one primary."

step "leaders SIGKILLed while 4 clients file at every office (drill run --scenario kill-leader-loop)"
DRILL="$(ld --json drill run --scenario kill-leader-loop --seconds 10 --clients 4)" ||
  fail "the drill failed: $(echo "$DRILL" | grep -o '"invariants":\[[^]]*\]' || true)"
ACKNOWLEDGED="$(echo "$DRILL" | field acknowledged)"
LOST="$(echo "$DRILL" | field lost_acknowledged)"
KILLS="$(echo "$DRILL" | field kills)"
P50="$(echo "$DRILL" | grep -o '"failover_ms":{[^}]*}' | field p50)"
[ "$LOST" = 0 ] || fail "$LOST acknowledged cases were lost"
[ "${KILLS:-0}" -gt 0 ] || fail "the drill killed no leader"
echo "$DRILL" | grep -o '"what":"SIGKILL[^"]*"' | cut -d'"' -f4 | sed 's/^/     /'
say "$KILLS leader hosts SIGKILLed; $ACKNOWLEDGED filings acknowledged, $LOST lost; the next write" \
  "was acknowledged ${P50:-?} ms after a kill (p50). An acknowledged case is on a quorum's disk."
case_line "$PETITION" 530602001 | grep -qF ": review_requested (" ||
  fail "$PETITION is not as it was left"
say "The first petition, $PETITION, is still there as it was left (review_requested)."

step "the audit log: every call, allowed or refused, hash-chained"
wait_until "the township's audit log showing the registrar's refused accept" \
  sh -c "'$LIANDONG' --dir '$DIR' --token-file '$WORK/530602001.token' audit --user desk | grep -q 'permission denied'"
at 530602001 audit --user desk | sed 's/^/     /'
say "The township's auditor reads who did what, refused or not; the chain verifies."

step "down"
ld down >/dev/null
LEFT="$(host_pids)"
[ -z "$LEFT" ] || fail "host processes still running: $LEFT"
say "Every host stopped gracefully; no process left behind ($((SECONDS - START_SECONDS)) s from set-up to here)."
echo "demo finished"
