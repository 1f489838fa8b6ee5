"""scenarios.py — the benchmark's scenarios (issue 6): which load
generator mode each runs, against which mailboxes, which figure it reports,
the limit that figure is compared with, and the target ratio against the
peer server (Dovecot for POP3, Postfix for SMTP submission)."""

from dataclasses import dataclass, field


@dataclass
class Scenario:
    name: str
    mode: str                   # pobox-loadgen scenario
    group: str                  # dataset group whose users and Maildirs it uses
    port: str                   # server port key: pop3, pop3s, submission
    peer: str                   # dovecot or postfix
    metric: str                 # figure compared: key of the run record
    unit: str
    args: list = field(default_factory=list)
    concurrency: int = 0        # 0: one slot per user of the group
    users: int = 0              # 0: every user of the group
    target: float = 0.0         # pobox must be >= target x the peer (0: none)
    limit: str = ""             # machine limit the figure is a fraction of
    quick: bool = False         # part of `make bench QUICK=1`
    lower_is_better: bool = False
    extra_metrics: tuple = ()   # further figures printed under the row
    pobox: str = "pobox"        # which pobox instance: "pobox-nocache" has
                                # auth.cache_ttl = 0 (every login hashes)


POP3 = [
    Scenario("pop3-login", "pop3-login", "idle", "pop3", "dovecot",
             "sessions_per_s", "logins/s", concurrency=16, users=64,
             target=2.5, limit="crypt_per_s", quick=True),
    Scenario("pop3s-login", "pop3-login", "idle", "pop3s", "dovecot",
             "sessions_per_s", "logins/s", ["--tls"], concurrency=16, users=64,
             target=2.0, limit="crypt_per_s", quick=True),
    Scenario("pop3s-login-resume", "pop3-login", "idle", "pop3s", "dovecot",
             "sessions_per_s", "logins/s", ["--tls", "--tls-resume"],
             concurrency=16, users=64, target=2.0, limit="crypt_per_s"),
    Scenario("pop3-login-nocache", "pop3-login", "idle", "pop3", "dovecot",
             "sessions_per_s", "logins/s", concurrency=16, users=64,
             limit="crypt_per_s", quick=True, pobox="pobox-nocache"),
    Scenario("pop3s-login-nocache", "pop3-login", "idle", "pop3s", "dovecot",
             "sessions_per_s", "logins/s", ["--tls"], concurrency=16, users=64,
             limit="crypt_per_s", pobox="pobox-nocache"),
    Scenario("pop3-poll-1k", "pop3-poll", "poll1k", "pop3", "dovecot",
             "sessions_per_s", "polls/s", target=2.0, limit="crypt_per_s",
             quick=True),
    Scenario("pop3-poll-10k", "pop3-poll", "poll10k", "pop3", "dovecot",
             "sessions_per_s", "polls/s", target=3.0, limit="crypt_per_s"),
    Scenario("pop3-poll-10k-nocache", "pop3-poll", "poll10k", "pop3", "dovecot",
             "sessions_per_s", "polls/s", limit="crypt_per_s", pobox="pobox-nocache"),
    Scenario("pop3-download", "pop3-download", "dl200", "pop3", "dovecot",
             "mb_per_s", "MB/s", target=2.0, limit="tcp_mb_per_s", quick=True,
             extra_metrics=("sessions_per_s",)),
    Scenario("pop3s-download", "pop3-download", "dl200", "pop3s", "dovecot",
             "mb_per_s", "MB/s", ["--tls"], target=2.0, limit="tcp_mb_per_s",
             extra_metrics=("sessions_per_s",)),
    Scenario("retr-50mb", "pop3-download", "big50", "pop3", "dovecot",
             "mb_per_s", "MB/s", concurrency=1, target=1.5, limit="tcp_mb_per_s",
             extra_metrics=("rss_growth_kb",)),
]

SMTP = [
    Scenario("smtp-submit-1", "smtp-submit", "smtp", "submission", "postfix",
             "messages_per_s", "msgs/s", ["--starttls", "--messages", "1"],
             concurrency=8, target=1.5, limit="fsync_writes_per_s", quick=True,
             extra_metrics=("lost",)),
    Scenario("smtp-submit-10", "smtp-submit", "smtp", "submission", "postfix",
             "messages_per_s", "msgs/s", ["--starttls", "--messages", "10"],
             concurrency=8, target=1.5, limit="fsync_writes_per_s",
             extra_metrics=("lost",)),
]

IDLE_SIZES = (1000, 5000, 10000)
IDLE_SIZES_QUICK = (1000,)
# Dovecot needs two processes per POP3S session and about 1.8 MB of machine
# memory each: 10,000 would take about 18 GB of this machine's 24 GB and
# minutes to set up, so it is measured up to 5,000.
IDLE_MAX = {"pobox": 10000, "dovecot": 5000}
IDLE_TARGET_KB = 20             # per session, and <= 1/25 of Dovecot's
GROWTH_SIZES = {"growth100": 100, "growth1k": 1000, "growth10k": 10000,
                "growth100k": 100000}
GROWTH_GROUPS = tuple(GROWTH_SIZES)
GROWTH_GROUPS_QUICK = ("growth100", "growth1k", "growth10k")
