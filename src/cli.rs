//! The command line, as clap parses it. Kept in the library so that the
//! man page and shell completions committed under `man/` and
//! `completions/` can be generated from it and checked in tests.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// A one-shot batch mail retriever: fetches mail from POP3 and IMAP
/// accounts and delivers it durably, deleting from the server only after
/// delivery is committed.
#[derive(Debug, Parser)]
#[command(name = "mailretr", version)]
pub struct Cli {
    /// Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More output: -v says what each account did, -vv adds the protocol
    /// transcript (secrets redacted)
    #[arg(long, short = 'v', action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only errors
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// How messages on stderr are written: text lines, or one JSON object
    /// per line (time, level, account, message) for machines
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// The directory of state.db, the locks and the spool [default:
    /// general.state_dir]; e.g. one per shard on a host running several
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch new mail from the configured accounts (all, or those named),
    /// or from one ad-hoc URL
    Fetch(FetchArgs),
    /// Keep fetching until SIGTERM: IMAP folders are watched with IDLE,
    /// POP3 accounts (and servers without IDLE) polled every
    /// poll_interval; SIGHUP reloads the config
    Watch(WatchArgs),
    /// Show per account the last run, its outcome, messages and bytes
    /// fetched, messages in the spool, and the last error (from the run
    /// log in the state database)
    Status {
        /// Print JSON (the shape is documented under STATUS JSON)
        #[arg(long)]
        json: bool,
    },
    /// Look at and act on the retry spool (messages a destination
    /// refused for now)
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Built-in OAuth2 for accounts and destinations with `oauth2 = {
    /// ... }`: sign in once, see token state, forget tokens
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Queue the message on stdin for sending, sendmail-compatible (also
    /// when the binary is run through a symlink named `sendmail`; one
    /// named `mailq` lists the queue)
    ///
    /// The message is committed to the spool (fsynced) before the command
    /// exits 0; a detached process then sends it after `[outgoing] delay`
    /// through the relay `[outgoing]` picks for its sender, and every
    /// `fetch`, `watch` and `queue flush` retries what is left. Options,
    /// as sendmail's (getopt syntax: `-oi`, `-fme@example.org`, `-ti`):
    /// `-t` adds the recipients in To:, Cc: and Bcc: to those on the
    /// command line (as Postfix does); `-i`, `-oi`: a line holding only
    /// `.` does not end the message; `-f FROM`, `-r FROM`: the envelope
    /// sender; `-F NAME`: the full name for an added From:; `-bm` (the
    /// default): queue; `-bp`: list the queue (`mailq`); `-q`: flush it;
    /// `-v`: say what was queued; `-C FILE`: the config file; `-odq`:
    /// queue only; `-odi` or `--now`: send before exiting; `--`: only
    /// recipients follow. `-oem`, `-oA...`, `-o<x>`, `-N`, `-B`, `-R`,
    /// `-V`, `-O`, `-X`, `-L`, `-h`, `-n`, `-m`, `-U` are accepted and
    /// ignored. Bcc: is removed, and Date:, Message-ID: and From: are
    /// added when missing. Exit status as sendmail's: 0 queued, 64 usage,
    /// 65 no recipients or unreadable input, 67 a recipient that cannot be
    /// sent to, 70 internal error, 75 the spool cannot take it (try
    /// again), 78 no `[outgoing]` or a bad config.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Sendmail {
        /// sendmail options and recipients
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

/// The format of messages on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `mailretr: account NAME: message` lines
    Text,
    /// One JSON object per line
    Json,
}

/// `mailretr fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Account names from the config, or one URL such as
    /// pop3s://USER@HOST (then --to is required; the password comes from
    /// MAILRETR_PASSWORD or is asked for on a terminal)
    #[arg(value_name = "ACCOUNT|URL")]
    pub accounts: Vec<String>,

    /// With a URL: the Maildir to deliver to
    #[arg(long, value_name = "MAILDIR")]
    pub to: Option<String>,

    /// Accounts fetched in parallel [default: general.jobs, 4]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Only count new messages; exit 0 if there are any, 1 if not
    #[arg(long)]
    pub check: bool,

    /// Leave fetched mail on the server
    #[arg(long, short = 'k')]
    pub keep: bool,

    /// Fetch all messages, ignoring what was seen before
    #[arg(long, short = 'a')]
    pub all: bool,

    /// Skip (and report) messages larger than SIZE, e.g. 10MB
    #[arg(long, short = 'l', value_name = "SIZE")]
    pub limit: Option<String>,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// What `fetch` and `watch` share for running on many hosts and being
/// monitored.
#[derive(Debug, Args, Clone, Default)]
pub struct OpsArgs {
    /// Take only the accounts in shard K of N (1-based): those that the
    /// jump consistent hash of the first 8 bytes (big-endian) of the
    /// SHA-256 of the name puts in bucket K-1 of N. Each shard needs its
    /// own state (--state-dir)
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<crate::shard::Shard>,

    /// A keep-mode account that moved to this shard (N changed) or is new
    /// here: mark the mail now on its server as seen without downloading
    /// it, instead of refusing the account (exit 5). The fallback when the
    /// old state is lost: mail that arrived since the old shard's last run
    /// is never delivered (prefer --adopt-from)
    #[arg(long)]
    pub adopt: bool,

    /// Another shard's state dir (where its state.db is; repeatable): a
    /// keep-mode account that moved to this shard or is new here gets the
    /// seen-state of the one where it last ran successfully (read-only),
    /// then runs as usual, so mail that arrived since is fetched
    #[arg(long, value_name = "DIR")]
    pub adopt_from: Vec<PathBuf>,

    /// Write Prometheus metrics (node_exporter's textfile format) to
    /// PATH at the end of the run (watch: after each account's pass)
    /// [default: general.metrics_file]
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

fn parse_shard(s: &str) -> Result<crate::shard::Shard, String> {
    s.parse()
}

/// `mailretr watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Account names from the config [default: all]
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// `mailretr queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List spooled messages: id, account, destination, sender,
    /// recipients, size, age, attempts, next attempt, last error
    List {
        /// Print JSON (a stable array of objects) for scripts
        #[arg(long)]
        json: bool,
    },
    /// Print one spooled message with its history
    Show {
        /// The spool id (from `queue list`)
        id: i64,
    },
    /// Retry now, ignoring the backoff: all due-or-not entries, or the ids
    /// given
    Flush {
        /// Spool ids; all entries when none are given
        ids: Vec<i64>,
        /// Only outgoing entries (queued by `mailretr sendmail`)
        #[arg(long)]
        outgoing: bool,
        /// Only entries whose next try has come (what sendmail's
        /// background attempt runs)
        #[arg(long)]
        due: bool,
        /// Wait this long first, e.g. 5s
        #[arg(long, value_name = "DURATION")]
        after: Option<String>,
    },
    /// Drop entries from the spool (asks on a terminal unless --yes)
    Delete {
        /// Spool ids
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `mailretr auth ...`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign in with the provider and store the refresh token in
    /// state.db: the authorization code flow with PKCE on a loopback
    /// redirect to http://127.0.0.1 (a browser is opened when DISPLAY or
    /// WAYLAND_DISPLAY is set; the URL is printed either way), or with
    /// --device the device flow (a code to enter on any device)
    Login {
        /// The account's name, or a destination's (`destination.NAME`
        /// or NAME)
        name: String,
        /// Use the device authorization grant (RFC 8628): for machines
        /// without a browser
        #[arg(long)]
        device: bool,
        /// How long to wait for the browser's redirect or the code's
        /// approval
        #[arg(long, value_name = "DURATION", default_value = "5m")]
        timeout: String,
    },
    /// Show each OAuth2 account's token state and the access token's
    /// expiry
    Status {
        /// Print JSON (an array of objects)
        #[arg(long)]
        json: bool,
    },
    /// Forget the stored tokens of an account or destination
    Logout {
        /// The account's name, or a destination's
        name: String,
    },
}

/// `mailretr config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate the config and print what would run
    Check,
}

/// The clap command, for generating the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The man pages of the subcommands (`mailretr-fetch.1`, ...), each as
/// (file name, roff), the way git documents its subcommands.
pub fn subcommand_man_pages() -> Vec<(String, Vec<u8>)> {
    let cmd = command();
    cmd.get_subcommands()
        .map(|sub| {
            let name = format!("mailretr-{}", sub.get_name());
            let sub = sub
                .clone()
                .name(name.clone())
                .version(cmd.get_version().unwrap_or("").to_string());
            let mut out = Vec::new();
            clap_mangen::Man::new(sub)
                .render(&mut out)
                .expect("writing to a Vec");
            (format!("{name}.1"), out)
        })
        .collect()
}

/// Renders the man page: clap's generated sections plus the hand-written
/// EXIT STATUS, FILES and EXAMPLES.
pub fn man_page() -> Vec<u8> {
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("writing to a Vec");
    man.render_name_section(&mut out).expect("writing to a Vec");
    man.render_synopsis_section(&mut out)
        .expect("writing to a Vec");
    man.render_description_section(&mut out)
        .expect("writing to a Vec");
    man.render_options_section(&mut out)
        .expect("writing to a Vec");
    man.render_subcommands_section(&mut out)
        .expect("writing to a Vec");
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    man.render_version_section(&mut out)
        .expect("writing to a Vec");
    out
}

const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
With several accounts: 0 if any account retrieved mail, otherwise the most serious failure. Every failure also prints one line naming the account.
.TP
.B 0
one or more messages retrieved (with \fB\-\-check\fR: mail is waiting)
.TP
.B 1
no new mail
.TP
.B 2
network or TLS error
.TP
.B 3
authentication failed
.TP
.B 4
protocol error
.TP
.B 5
config or command\-line error
.TP
.B 6
unsafe config file permissions (a password readable by others)
.TP
.B 7
the server reported an error (or is throttling connections) or timed out
.TP
.B 8
another mailretr holds the lock for that account
.TP
.B 10
a delivery failed and could not be spooled: a destination refused a message that stays on the server, or a local fault (permissions, a read\-only or failing disk, a broken MDA) stopped delivery; nothing undelivered was deleted
.TP
.B 13
mail was retrieved, but \fBfetch_limit\fR or \fBmax_bytes_per_run\fR stopped the run with more left on the server (run again). Any real failure of another account outranks it; another account's plain retrieval (0) wins over it, as in fetchmail
.TP
.B 23
internal error
.PP
\fBmailretr sendmail\fR (and the binary run as \fBsendmail\fR or \fBmailq\fR) exits with sendmail's codes instead: 0 queued, 64 (EX_USAGE), 65 (EX_DATAERR: no recipients, unreadable input), 67 (EX_NOUSER), 70 (EX_SOFTWARE), 75 (EX_TEMPFAIL: the spool cannot take the message; try again), 78 (EX_CONFIG: no \fB[outgoing]\fR or a bad config).
.SH LOGGING
Messages go to stderr. A run where nothing went wrong prints nothing (unless \fB\-v\fR), so cron mails only failures. Every failure is one line naming the account: \fBmailretr: account NAME: ...\fR. With \fB\-\-log\-format json\fR each line is instead a JSON object with \fBtime\fR (RFC 3339, UTC), \fBlevel\fR (error, warn, info, debug, trace), \fBmessage\fR and, when the line concerns one account, \fBaccount\fR.
.PP
\fB\-vv\fR adds the protocol transcript: client (\fBC:\fR) and server (\fBS:\fR) lines, with passwords, \fBAUTH\fR/\fBAUTHENTICATE\fR payloads and OAuth tokens shown as \fB<redacted>\fR, and message bodies as their first line and size. An account's \fBtranscript\fR key writes the same to a file. No secret appears in any error message or log line.
.PP
On a terminal (not on a pipe, not under cron, not with \fB\-q\fR, \fB\-vv\fR or JSON logs), a download that takes a while shows a progress bar per account: messages, bytes, rate and ETA.
.SH "STATUS JSON"
\fBmailretr status \-\-json\fR prints one object. The shape is stable: while \fBversion\fR is 1, keys may be added but none is removed or changes meaning.
.PP
.EX
{
  "version": 1,
  "accounts": [
    {
      "name": "isp",             // account name
      "configured": true,        // false: only in the run log
      "last_run": {              // null if never run
        "started_at": "2026\-11\-24T06:00:01Z",
        "started_at_unix": 1795500001,
        "duration_ms": 1234,
        "exit_code": 0,          // as under EXIT STATUS
        "outcome": "retrieved",  // retrieved | no_mail | limit_reached
                                 // | partial | failed
        "messages": 3,           // delivered in that run
        "spooled": 0,            // put in the retry spool in that run
                                 // (not counted in messages)
        "bytes": 48213,          // of the messages delivered, spooled
                                 // or refused and deleted
        "error": null            // the error text, if it failed
      },
      "spooled": 0,              // messages in the retry spool
      "last_error": {            // null if no kept run failed
        "at": "2026\-11\-23T18:00:02Z",
        "at_unix": 1795456802,
        "exit_code": 2,
        "message": "connecting to pop.isp.example:995: ..."
      },
      "recent": {                // over the runs the log keeps
        "runs": 100, "messages": 310, "bytes": 9120331,
        "failures": 1
      },
      "quota": {                 // null unless the IMAP server offers
                                 // QUOTA; read by the last run
        "root": "User quota",
        "storage_kib": { "used": 950, "limit": 1024 },  // or null
        "messages": null,        // { "used": .., "limit": .. } or null
        "percent": 92,           // the fullest resource (null: none)
        "checked_at": "2026\-11\-24T06:00:01Z",
        "checked_at_unix": 1795500001
      },
      "login_delay": {           // null unless a POP3 server answered
                                 // [LOGIN-DELAY] and it is not over
        "host": "pop.isp.example",
        "not_before": "2026\-11\-24T06:15:01Z",  // no connection before
        "not_before_unix": 1795500901,
        "reason": "the server is throttling connections: login: \-ERR [LOGIN\-DELAY] ..."
      }
    }
  ]
}
.EE
.PP
(The comments are not part of the output.) \fBpartial\fR means an error ended a run after some messages were delivered or spooled. The run log keeps the last 100 runs per account.
.SH FILES
.TP
.I $XDG_CONFIG_HOME/mailretr/config.toml
the configuration (default \fI~/.config/mailretr/config.toml\fR); see \fBmailretr.toml\fR(5)
.TP
.I $XDG_STATE_HOME/mailretr/state.db
seen messages and the run log (default \fI~/.local/state/mailretr/state.db\fR; \fBstate_dir\fR moves it)
.TP
.I $XDG_STATE_HOME/mailretr/locks/
per\-account lock files
.TP
.I $XDG_STATE_HOME/mailretr/outgoing.lock
held by whoever sends the outgoing queue (one at a time)
.SH ENVIRONMENT
.TP
.B MAILRETR_PASSWORD
the password for an ad\-hoc URL fetch
.TP
.B MAILRETR_SYSLOG_SOCKET
with \fBlog = "syslog"\fR: the unix datagram socket to send to instead of /dev/log
.SH SHARDS
\fB\-\-shard K/N\fR takes the accounts whose name's SHA\-256, first 8 bytes read big\-endian, falls in bucket K\-1 of N by the jump consistent hash (Lamping and Veach, 2014): going from N to N+1 shards moves only the accounts the new shard takes. Each shard keeps its own state (\fB\-\-state\-dir\fR). When N changes, a keep\-mode account that moved to a shard whose state is not current for it is refused (exit 5) until a run with \fB\-\-adopt\-from\fR \fIDIR\fR (repeatable: the old shards' state dirs) copies its seen\-state from the state.db where it last ran successfully (read\-only; the spool is not copied) and then fetches it as usual, so mail that arrived since the old shard's last run is delivered once. \fB\-\-adopt\fR, the fallback when the old state is lost, marks the mail on its server as seen without downloading it (mail of that gap is never delivered); see the README, "Changing N".
.SH EXAMPLES
Fetch every configured account (quiet unless something fails; suitable for cron):
.PP
.RS
mailretr fetch
.RE
.PP
Fetch once from a POP3S mailbox into a Maildir, leaving the mail on the server:
.PP
.RS
MAILRETR_PASSWORD=secret mailretr fetch \-\-keep pop3s://me@pop.example.com \-\-to ~/Maildir
.RE
.PP
Check a config file:
.PP
.RS
mailretr \-\-config ./config.toml config check
.RE
.PP
Send mail from mutt, git and cron through the outgoing queue (see \fBmailretr.toml\fR(5), \fB[outgoing]\fR):
.PP
.RS
set sendmail="mailretr sendmail" (in muttrc)
.br
git config \-\-global sendemail.sendmailcmd "mailretr sendmail"
.br
ln \-s "$(command \-v mailretr)" ~/bin/sendmail; ln \-s "$(command \-v mailretr)" ~/bin/mailq
.br
*/10 * * * * mailretr \-q queue flush
.RE
.PP
A monitoring check: accounts whose last run failed:
.PP
.RS
mailretr status \-\-json | jq \-r '.accounts[] | select(.last_run.outcome == "failed") | .name'
.RE
"#;
