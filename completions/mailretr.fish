# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mailretr_global_optspecs
    string join \n c/config= v/verbose q/quiet log-format= state-dir= h/help V/version
end

function __fish_mailretr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mailretr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mailretr_using_subcommand
    set -l cmd (__fish_mailretr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mailretr -n "__fish_mailretr_needs_command" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_needs_command" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_needs_command" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_needs_command" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_needs_command" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_needs_command" -s V -l version -d 'Print version'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "fetch" -d 'Fetch new mail from the configured accounts (all, or those named), or from one ad-hoc URL'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "watch" -d 'Keep fetching until SIGTERM: IMAP folders are watched with IDLE, POP3 accounts (and servers without IDLE) polled every poll_interval; SIGHUP reloads the config'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "status" -d 'Show per account the last run, its outcome, messages and bytes fetched, messages in the spool, and the last error (from the run log in the state database)'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "queue" -d 'Look at and act on the retry spool (messages a destination refused for now)'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "config" -d 'Inspect the configuration'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "auth" -d 'Built-in OAuth2 for accounts and destinations with `oauth2 = { ... }`: sign in once, see token state, forget tokens'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "sendmail" -d 'Queue the message on stdin for sending, sendmail-compatible (also when the binary is run through a symlink named `sendmail`; one named `mailq` lists the queue)'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c mailretr -n "__fish_mailretr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l to -d 'With a URL: the Maildir to deliver to' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s j -l jobs -d 'Accounts fetched in parallel [default: general.jobs, 4]' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s l -l limit -d 'Skip (and report) messages larger than SIZE, e.g. 10MB' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l shard -d 'Take only the accounts in shard K of N (1-based): those that the jump consistent hash of the first 8 bytes (big-endian) of the SHA-256 of the name puts in bucket K-1 of N. Each shard needs its own state (--state-dir)' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l adopt-from -d 'Another shard\'s state dir (where its state.db is; repeatable): a keep-mode account that moved to this shard or is new here gets the seen-state of the one where it last ran successfully (read-only), then runs as usual, so mail that arrived since is fetched' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l metrics-file -d 'Write Prometheus metrics (node_exporter\'s textfile format) to PATH at the end of the run (watch: after each account\'s pass) [default: general.metrics_file]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l check -d 'Only count new messages; exit 0 if there are any, 1 if not'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s k -l keep -d 'Leave fetched mail on the server'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s a -l all -d 'Fetch all messages, ignoring what was seen before'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -l adopt -d 'A keep-mode account that moved to this shard (N changed) or is new here: mark the mail now on its server as seen without downloading it, instead of refusing the account (exit 5). The fallback when the old state is lost: mail that arrived since the old shard\'s last run is never delivered (prefer --adopt-from)'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand fetch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l shard -d 'Take only the accounts in shard K of N (1-based): those that the jump consistent hash of the first 8 bytes (big-endian) of the SHA-256 of the name puts in bucket K-1 of N. Each shard needs its own state (--state-dir)' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l adopt-from -d 'Another shard\'s state dir (where its state.db is; repeatable): a keep-mode account that moved to this shard or is new here gets the seen-state of the one where it last ran successfully (read-only), then runs as usual, so mail that arrived since is fetched' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l metrics-file -d 'Write Prometheus metrics (node_exporter\'s textfile format) to PATH at the end of the run (watch: after each account\'s pass) [default: general.metrics_file]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -l adopt -d 'A keep-mode account that moved to this shard (N changed) or is new here: mark the mail now on its server as seen without downloading it, instead of refusing the account (exit 5). The fallback when the old state is lost: mail that arrived since the old shard\'s last run is never delivered (prefer --adopt-from)'
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -l json -d 'Print JSON (the shape is documented under STATUS JSON)'
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -f -a "list" -d 'List spooled messages: id, account, destination, sender, recipients, size, age, attempts, next attempt, last error'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -f -a "show" -d 'Print one spooled message with its history'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -f -a "flush" -d 'Retry now, ignoring the backoff: all due-or-not entries, or the ids given'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -f -a "delete" -d 'Drop entries from the spool (asks on a terminal unless --yes)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and not __fish_seen_subcommand_from list show flush delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (a stable array of objects) for scripts'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -l after -d 'Wait this long first, e.g. 5s' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -l outgoing -d 'Only outgoing entries (queued by `mailretr sendmail`)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -l due -d 'Only entries whose next try has come (what sendmail\'s background attempt runs)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -s y -l yes -d 'Do not ask'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "list" -d 'List spooled messages: id, account, destination, sender, recipients, size, age, attempts, next attempt, last error'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print one spooled message with its history'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "flush" -d 'Retry now, ignoring the backoff: all due-or-not entries, or the ids given'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Drop entries from the spool (asks on a terminal unless --yes)'
complete -c mailretr -n "__fish_mailretr_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Parse and validate the config and print what would run'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Parse and validate the config and print what would run'
complete -c mailretr -n "__fish_mailretr_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -f -a "login" -d 'Sign in with the provider and store the refresh token in state.db: the authorization code flow with PKCE on a loopback redirect to http://127.0.0.1 (a browser is opened when DISPLAY or WAYLAND_DISPLAY is set; the URL is printed either way), or with --device the device flow (a code to enter on any device)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -f -a "status" -d 'Show each OAuth2 account\'s token state and the access token\'s expiry'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -f -a "logout" -d 'Forget the stored tokens of an account or destination'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and not __fish_seen_subcommand_from login status logout help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -l timeout -d 'How long to wait for the browser\'s redirect or the code\'s approval' -r
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -l device -d 'Use the device authorization grant (RFC 8628): for machines without a browser'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -l json -d 'Print JSON (an array of objects)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from logout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "login" -d 'Sign in with the provider and store the refresh token in state.db: the authorization code flow with PKCE on a loopback redirect to http://127.0.0.1 (a browser is opened when DISPLAY or WAYLAND_DISPLAY is set; the URL is printed either way), or with --device the device flow (a code to enter on any device)'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show each OAuth2 account\'s token state and the access token\'s expiry'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "logout" -d 'Forget the stored tokens of an account or destination'
complete -c mailretr -n "__fish_mailretr_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand sendmail" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand sendmail" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand sendmail" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand sendmail" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand sendmail" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -s c -l config -d 'Config file [default: $XDG_CONFIG_HOME/mailretr/config.toml]' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -l log-format -d 'How messages on stderr are written: text lines, or one JSON object per line (time, level, account, message) for machines' -r -f -a "text\t'`mailretr: account NAME: message` lines'
json\t'One JSON object per line'"
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -l state-dir -d 'The directory of state.db, the locks and the spool [default: general.state_dir]; e.g. one per shard on a host running several' -r -F
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -s v -l verbose -d 'More output: -v says what each account did, -vv adds the protocol transcript (secrets redacted)'
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -s q -l quiet -d 'Print only errors'
complete -c mailretr -n "__fish_mailretr_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "fetch" -d 'Fetch new mail from the configured accounts (all, or those named), or from one ad-hoc URL'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "watch" -d 'Keep fetching until SIGTERM: IMAP folders are watched with IDLE, POP3 accounts (and servers without IDLE) polled every poll_interval; SIGHUP reloads the config'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "status" -d 'Show per account the last run, its outcome, messages and bytes fetched, messages in the spool, and the last error (from the run log in the state database)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "queue" -d 'Look at and act on the retry spool (messages a destination refused for now)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "config" -d 'Inspect the configuration'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "auth" -d 'Built-in OAuth2 for accounts and destinations with `oauth2 = { ... }`: sign in once, see token state, forget tokens'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "sendmail" -d 'Queue the message on stdin for sending, sendmail-compatible (also when the binary is run through a symlink named `sendmail`; one named `mailq` lists the queue)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and not __fish_seen_subcommand_from fetch watch status queue config auth sendmail completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "list" -d 'List spooled messages: id, account, destination, sender, recipients, size, age, attempts, next attempt, last error'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "show" -d 'Print one spooled message with its history'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "flush" -d 'Retry now, ignoring the backoff: all due-or-not entries, or the ids given'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "delete" -d 'Drop entries from the spool (asks on a terminal unless --yes)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Parse and validate the config and print what would run'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "login" -d 'Sign in with the provider and store the refresh token in state.db: the authorization code flow with PKCE on a loopback redirect to http://127.0.0.1 (a browser is opened when DISPLAY or WAYLAND_DISPLAY is set; the URL is printed either way), or with --device the device flow (a code to enter on any device)'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "status" -d 'Show each OAuth2 account\'s token state and the access token\'s expiry'
complete -c mailretr -n "__fish_mailretr_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "logout" -d 'Forget the stored tokens of an account or destination'
