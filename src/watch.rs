//! `mailretr watch`: the long-running mode, for the lowest delivery
//! latency. Every selected account gets a thread; an IMAP account also
//! gets one IDLE connection (RFC 2177) per folder it fetches, up to its
//! `max_idle_connections`, each a separate session that only `EXAMINE`s
//! its folder and idles. Any new mail wakes the account, which then
//! fetches through exactly the same path as `mailretr fetch`
//! (`run::fetch_account`: same state, destinations, spool and
//! per-account lock, so a cron `fetch` beside `watch` simply takes turns).
//! POP3 accounts, servers without IDLE and folders over the limit are
//! polled every `poll_interval`.
//!
//! What keeps mail from being missed: the account fetches everything
//! first, and again every time an IDLE connection is (re)established, so
//! mail that arrived while a connection was down is caught up. Failures
//! reconnect with capped exponential backoff and jitter (`Backoff`), and
//! only the failing account waits.
//!
//! Signals: SIGINT/SIGTERM stop everything within a second or so (a fetch
//! in progress finishes the message in hand first) and `run` returns;
//! SIGHUP reloads the config, restarting only the accounts whose settings
//! changed. A blocked IDLE read is interrupted by shutting its socket
//! down: the IDLE session holds nothing that needs a polite goodbye (it
//! is read-only), unlike the fetch session, which always logs out.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use imap::extensions::idle::{SetReadTimeout, WaitOutcome};
use imap::types::UnsolicitedResponse;

use crate::config::{Account, Config, DestinationConfig, General, Protocol};
use crate::error::{Error, Result};
use crate::net::Stream;
use crate::run::{self, FetchOptions};
use crate::secret;
use crate::shard::Shard;
use crate::signal;
use crate::slots::{IdlePlace, Slot, Slots};
use crate::source::imap::folders::ChosenFolder;
use crate::source::imap::{self as imap_source, LoggedIn};
use crate::source::Source;

/// How often the loops look at their stop flags and the signals.
const TICK: Duration = Duration::from_millis(100);

/// How long a stop waits for an account's thread (a fetch in progress
/// finishes the message in hand first).
const ACCOUNT_STOP_WAIT: Duration = Duration::from_secs(10);

/// How long a stop waits for an IDLE connection's thread.
const IDLER_STOP_WAIT: Duration = Duration::from_secs(2);

/// How often the spool hook is called; the spool itself decides what is due.
const SPOOL_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// When another mailretr holds the account's lock (a cron `fetch` is
/// running), the wake-up is retried this soon.
const LOCKED_RETRY: Duration = Duration::from_secs(3);

/// The first reconnect delay; it doubles on each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);

/// The longest reconnect delay.
const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);

/// Watches the accounts of `config` named in `names` (all of them when
/// empty) until SIGINT or SIGTERM (or `signal::request_stop`). On SIGHUP
/// `load` reads the config again; one that fails to load is reported and
/// the running one kept.
///
/// The caller installs the signal handlers (`signal::install_*`).
pub fn run(
    config: Config,
    load: &dyn Fn() -> Result<Config>,
    names: &[String],
    options: &WatchOptions,
) -> Result<()> {
    let config = Arc::new(config);
    let shard = options.shard.unwrap_or(Shard::ALL);
    crate::store::State::warn_if_lost(&config.general.state_dir);
    crate::net::session::use_state_dir(&config.general.state_dir);
    let spec = crate::store::State::open(&config.general.state_dir)?
        .begin_shard(shard, crate::retry::now())?;
    let pass = Arc::new(Pass {
        fetch: FetchOptions {
            shard_spec: Some(spec),
            adopt: options.adopt,
            adopt_from: options.adopt_from.clone(),
            ..FetchOptions::default()
        },
        shard: options.shard,
        metrics_file: options.metrics_file.clone(),
    });
    let mut watchers = BTreeMap::new();
    start_selected(&config, names, &pass, &mut watchers)?;
    flush_spool_due(&config);
    let mut config = config;
    let mut next_spool_check = Instant::now() + SPOOL_CHECK_INTERVAL;
    while !signal::stop_requested() {
        if signal::take_reload_request() {
            match load() {
                Ok(new) => {
                    let new = Arc::new(new);
                    match reload(&new, names, &pass, &mut watchers) {
                        Ok(()) => config = new,
                        Err(e) => log::error!("reload: {e}; keeping the running config"),
                    }
                }
                Err(e) => log::error!("reload: {e}; keeping the running config"),
            }
        }
        if Instant::now() >= next_spool_check {
            flush_spool_due(&config);
            next_spool_check = Instant::now() + SPOOL_CHECK_INTERVAL;
        }
        thread::sleep(TICK);
    }
    log::info!("stopping");
    for watcher in watchers.values() {
        watcher.stop();
    }
    for (_, watcher) in watchers {
        watcher.join();
    }
    Ok(())
}

/// What `watch` was asked for beyond the account names.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `--shard K/N`: only the accounts in that shard.
    pub shard: Option<Shard>,
    /// `--adopt` (see `FetchOptions::adopt`).
    pub adopt: bool,
    /// `--adopt-from` (see `FetchOptions::adopt_from`).
    pub adopt_from: Vec<std::path::PathBuf>,
    /// `--metrics-file`, in place of `general.metrics_file`.
    pub metrics_file: Option<std::path::PathBuf>,
}

/// What every account's pass shares.
#[derive(Debug)]
struct Pass {
    /// The options of each fetch (the shard spec this watch recorded).
    fetch: FetchOptions,
    shard: Option<Shard>,
    /// `--metrics-file`.
    metrics_file: Option<std::path::PathBuf>,
}

impl Pass {
    /// After an account's pass: rewrites the metrics file, if any, for
    /// every account of the shard.
    fn update_metrics(&self, config: &Config) {
        let Some(path) = self
            .metrics_file
            .as_ref()
            .or(config.general.metrics_file.as_ref())
        else {
            return;
        };
        crate::metrics::update_for(config, path, self.shard.unwrap_or(Shard::ALL));
    }
}

/// Retries spool entries that are due, for every account that has any,
/// under the account's lock (a fetch woken meanwhile waits its turn, or
/// finds the lock held and catches up on its next wake). Each account's
/// outcome is logged; nothing here stops the watcher.
pub fn flush_spool_due(config: &Config) {
    let state = match crate::store::State::open(&config.general.state_dir) {
        Ok(state) => state,
        Err(e) => {
            log::error!("spool: {e}");
            return;
        }
    };
    let now = crate::retry::now();
    let mut state = state;
    for account in &config.accounts {
        match state.spool_due(&account.name, now) {
            Ok(due) if due.is_empty() => continue,
            Ok(_) => {}
            Err(e) => {
                log::error!("account {}: spool: {e}", account.name);
                continue;
            }
        }
        let Ok(_lock) = crate::lock::AccountLock::acquire(&config.general.state_dir, &account.name)
        else {
            continue;
        };
        match crate::retry::flush_account(config, &account.name, &mut state, None, now) {
            Ok(report) => {
                for e in report.errors.iter().chain(&report.local_faults) {
                    log::error!("account {}: {e}", account.name);
                }
                if report.delivered + report.bounced > 0 {
                    log::info!(
                        "account {}: spool: {} delivered, {} bounced, {} still failing",
                        account.name,
                        report.delivered,
                        report.bounced,
                        report.deferred
                    );
                }
            }
            Err(e) => log::error!("account {}: spool: {e}", account.name),
        }
    }
    // And what `mailretr sendmail` queued.
    crate::outgoing::flush_due_quietly(config);
}

/// The accounts `names` selects (all when empty) of those in `shard`,
/// by index in the config. A shard may have no accounts; a name outside
/// the shard is an error.
fn selected(config: &Config, names: &[String], shard: Option<Shard>) -> Result<Vec<usize>> {
    if config.accounts.is_empty() {
        return Err(Error::Config("the config defines no [[account]]".into()));
    }
    let shard = shard.unwrap_or(Shard::ALL);
    if names.is_empty() {
        return Ok((0..config.accounts.len())
            .filter(|&i| shard.contains(&config.accounts[i].name))
            .collect());
    }
    names
        .iter()
        .map(|name| {
            let index = config
                .accounts
                .iter()
                .position(|a| &a.name == name)
                .ok_or_else(|| Error::Config(format!("no account named {name:?} in the config")))?;
            if !shard.contains(name) {
                return Err(Error::Config(format!(
                    "account {name} is in shard {}/{}, not {shard}",
                    crate::shard::shard_of(name, shard.count),
                    shard.count
                )));
            }
            Ok(index)
        })
        .collect()
}

fn start_selected(
    config: &Arc<Config>,
    names: &[String],
    pass: &Arc<Pass>,
    watchers: &mut BTreeMap<String, AccountWatcher>,
) -> Result<()> {
    let chosen = selected(config, names, pass.shard)?;
    if chosen.is_empty() {
        log::info!(
            "shard {} has no accounts; waiting for a reload",
            pass.shard.unwrap_or(Shard::ALL)
        );
    }
    for index in chosen {
        let watcher = AccountWatcher::start(config.clone(), index, pass.clone());
        watchers.insert(config.accounts[index].name.clone(), watcher);
    }
    Ok(())
}

/// Applies a reloaded config: accounts whose settings are unchanged keep
/// running (and their connections); changed ones are restarted, removed
/// ones stopped, new ones started.
fn reload(
    config: &Arc<Config>,
    names: &[String],
    pass: &Arc<Pass>,
    watchers: &mut BTreeMap<String, AccountWatcher>,
) -> Result<()> {
    let wanted = selected(config, names, pass.shard)?;
    let wanted_names: Vec<&str> = wanted
        .iter()
        .map(|&i| config.accounts[i].name.as_str())
        .collect();
    let gone: Vec<String> = watchers
        .keys()
        .filter(|name| !wanted_names.contains(&name.as_str()))
        .cloned()
        .collect();
    let mut stopping = Vec::new();
    for name in gone {
        let watcher = watchers.remove(&name).expect("listed above");
        log::info!("account {name}: no longer in the config; stopping");
        watcher.stop();
        stopping.push(watcher);
    }
    let (mut kept, mut started) = (0, 0);
    for index in wanted {
        let account = &config.accounts[index];
        let settings = Settings::of(config, account);
        if let Some(running) = watchers.get(&account.name) {
            if running.settings == settings {
                kept += 1;
                continue;
            }
            log::info!("account {}: settings changed; restarting", account.name);
            let old = watchers.remove(&account.name).expect("looked up above");
            old.stop();
            stopping.push(old);
        }
        watchers.insert(
            account.name.clone(),
            AccountWatcher::start(config.clone(), index, pass.clone()),
        );
        started += 1;
    }
    for watcher in stopping {
        watcher.join();
    }
    log::info!("config reloaded: {kept} accounts kept, {started} started");
    Ok(())
}

/// Everything an account's watcher depends on; when a reload leaves it
/// equal, the watcher keeps running.
#[derive(Debug, PartialEq)]
struct Settings {
    account: Account,
    destinations: Vec<Option<DestinationConfig>>,
    general: General,
}

impl Settings {
    fn of(config: &Config, account: &Account) -> Settings {
        Settings {
            account: account.clone(),
            destinations: account
                .deliver_to
                .iter()
                .map(|d| config.destinations.get(d).cloned())
                .collect(),
            general: config.general.clone(),
        }
    }
}

/// A stop flag that also honours SIGINT/SIGTERM.
#[derive(Debug, Clone, Default)]
struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst) || signal::stop_requested()
    }

    /// Sleeps for `duration`, or less if the flag is set meanwhile.
    /// Returns whether the flag is set.
    fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            if self.is_set() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            thread::sleep(TICK.min(until - now));
        }
    }
}

/// One account's watcher thread.
struct AccountWatcher {
    settings: Settings,
    stop: StopFlag,
    thread: JoinHandle<()>,
}

impl AccountWatcher {
    fn start(config: Arc<Config>, index: usize, pass: Arc<Pass>) -> AccountWatcher {
        let settings = Settings::of(&config, &config.accounts[index]);
        let stop = StopFlag::default();
        let thread_stop = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("watch {}", config.accounts[index].name))
            .spawn(move || watch_account(&config, index, &pass, &thread_stop))
            .expect("spawning a thread");
        AccountWatcher {
            settings,
            stop,
            thread,
        }
    }

    fn stop(&self) {
        self.stop.set();
    }

    /// Waits for the thread, but only up to `ACCOUNT_STOP_WAIT`: a fetch
    /// stuck on a dead server must not keep SIGTERM from working (and
    /// leaving it loses nothing: the durable order holds at any point).
    fn join(self) {
        let name = self.settings.account.name;
        if !join_within(self.thread, ACCOUNT_STOP_WAIT) {
            log::warn!("account {name}: still busy with the server; not waiting for it");
        }
    }
}

/// What an IDLE connection tells its account.
#[derive(Debug)]
enum Event {
    /// The connection is (again) idling on the folder: mail may have
    /// arrived while it was not, so fetch.
    Connected(String),
    /// New mail in the folder.
    Changed(String),
}

/// The account's thread: wakes up on IDLE events and poll deadlines and
/// fetches.
fn watch_account(config: &Config, index: usize, pass: &Pass, stop: &StopFlag) {
    let account = &config.accounts[index];
    let name = account.name.as_str();
    let (events_tx, events) = mpsc::channel();
    let mut idlers: Vec<Idler> = Vec::new();
    // IMAP folders are found (and their IDLE connections started) first;
    // POP3 has nothing to find and is simply polled.
    let mut poll = account.protocol == Protocol::Pop3;
    let mut discovered = account.protocol == Protocol::Pop3;
    let mut discover_at = Instant::now();
    let mut discover_backoff = Backoff::default();
    let mut fetch_due = Some(Instant::now());
    let mut fetch_backoff = Backoff::default();
    if poll {
        log::info!(
            "account {name}: polling every {}",
            secs(account.watch.poll_interval)
        );
    }

    while !stop.is_set() {
        if !discovered && Instant::now() >= discover_at {
            // A panic (a bug) while finding folders costs a retry, not
            // the account's watcher.
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                discover(config, account, stop)
            }))
            .unwrap_or_else(|_| {
                Err(Error::Internal(
                    "internal error while finding folders".into(),
                ))
            });
            match found {
                Ok(found) => {
                    discovered = true;
                    discover_backoff.reset();
                    poll = start_idlers(config, account, found, &events_tx, stop, &mut idlers);
                }
                Err(e) => {
                    let delay = discover_backoff.next_delay();
                    log::error!("account {name}: {e}; reconnecting in {}", secs(delay));
                    discover_at = Instant::now() + delay;
                }
            }
        }
        if fetch_due.is_some_and(|due| Instant::now() >= due) {
            let fetched = fetch_now(config, account, &pass.fetch);
            pass.update_metrics(config);
            fetch_due = match fetched {
                Fetched::Done => {
                    fetch_backoff.reset();
                    poll.then(|| Instant::now() + account.watch.poll_interval)
                }
                Fetched::Busy => Some(Instant::now() + jitter(LOCKED_RETRY)),
                Fetched::Failed(e) => {
                    let delay = fetch_backoff.next_delay();
                    log::error!("account {name}: {e}; retrying in {}", secs(delay));
                    Some(Instant::now() + delay)
                }
            };
        }
        let mut wait = TICK;
        if let Some(due) = fetch_due {
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        if let Ok(event) = events.recv_timeout(wait) {
            // Several at once are one wake-up.
            for event in std::iter::once(event).chain(events.try_iter()) {
                match event {
                    // The IDLE thread said so at info level already.
                    Event::Changed(folder) => log::debug!("account {name}: {folder}: waking"),
                    Event::Connected(folder) => {
                        log::debug!("account {name}: {folder}: (re)connected, catching up");
                        fetch_backoff.reset();
                    }
                }
            }
            fetch_due = Some(Instant::now());
        }
    }
    for idler in &idlers {
        idler.stop();
    }
    for idler in idlers {
        // A connection attempt to a server that does not answer cannot
        // be interrupted; it holds nothing, so it is left to die with
        // the process rather than hold up the stop.
        if !join_within(idler.thread, IDLER_STOP_WAIT) {
            log::debug!("account {name}: an IDLE connection is still connecting; leaving it");
        }
    }
    log::info!("account {name}: stopped");
}

/// Joins `thread` if it ends within `wait`; returns whether it did. A
/// thread that panicked counts as ended (the panic was already printed).
fn join_within(thread: JoinHandle<()>, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while !thread.is_finished() {
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = thread.join();
    true
}

enum Fetched {
    Done,
    Busy,
    Failed(Error),
}

/// One fetch of the whole account, the way `mailretr fetch` does it.
fn fetch_now(config: &Config, account: &Account, options: &FetchOptions) -> Fetched {
    let name = &account.name;
    let report = run::fetch_account_guarded(config, account, options);
    for w in &report.warnings {
        log::warn!("account {name}: {w}");
    }
    let done = report.done_before();
    match report.error {
        Some(Error::Locked(why)) => {
            log::info!("account {name}: {why}; trying again shortly");
            Fetched::Busy
        }
        Some(e) => match done {
            Some(done) => Fetched::Failed(Error::Internal(format!("{e} ({done})"))),
            None => Fetched::Failed(e),
        },
        None => {
            let mut line = format!(
                "account {name}: fetched {} messages ({})",
                report.retrieved(),
                bytesize::ByteSize(report.bytes)
            );
            if report.retrieved() > report.messages {
                line.push_str(&format!(": {}", report.outcomes()));
            }
            log::info!("{line}");
            Fetched::Done
        }
    }
}

/// What a look at an IMAP account found: the folders a fetch takes mail
/// from, and whether the server can IDLE.
struct Found {
    folders: Vec<ChosenFolder>,
    idle: bool,
}

fn discover(config: &Config, account: &Account, stop: &StopFlag) -> Result<Found> {
    let _slot = connection_slot(config, account, stop)?;
    let password = secret::resolve(&account.secret)?;
    let mut source = imap_source::connect(account, password.as_deref().map(String::as_str), true)?;
    let folders = source.chosen_folders();
    let idle = source.has_capability("IDLE");
    let _ = source.finish();
    Ok(Found {
        folders: folders?,
        idle,
    })
}

/// A slot of the account's server's `max_connections_per_host`
/// (`crate::slots`), shared with every fetch of the process; waits for
/// one, unless stopped.
fn connection_slot(config: &Config, account: &Account, stop: &StopFlag) -> Result<Slot> {
    let limit = account.connection_limit(&config.general);
    Slots::global()
        .acquire(&account.server.host, limit, &|| stop.is_set())
        .ok_or_else(|| run::stopped_waiting(&account.server.host))
}

/// Starts the IDLE connections for the folders found, up to the limit
/// (`max_idle_connections`, and `max_connections_per_host`: the IDLE
/// connections to one host stay below it, so that one connection is
/// always left for fetching). Returns whether the account must also be
/// polled.
fn start_idlers(
    config: &Config,
    account: &Account,
    found: Found,
    events: &Sender<Event>,
    stop: &StopFlag,
    idlers: &mut Vec<Idler>,
) -> bool {
    let name = &account.name;
    let limit = account.watch.max_idle_connections;
    if !found.idle {
        log::info!(
            "account {name}: the server does not offer IDLE; polling every {}",
            secs(account.watch.poll_interval)
        );
        return true;
    }
    let host_limit = account.connection_limit(&config.general);
    let mut over_host_limit = 0;
    for folder in found.folders.iter().take(limit) {
        match Slots::global().reserve_idle(&account.server.host, host_limit) {
            Some(place) => idlers.push(Idler::start(
                account,
                folder.clone(),
                events.clone(),
                stop,
                place,
            )),
            None => over_host_limit += 1,
        }
    }
    let polled = found.folders.len().saturating_sub(limit);
    if polled > 0 {
        log::info!(
            "account {name}: {polled} folders over max_idle_connections = {limit}; polling them every {}",
            secs(account.watch.poll_interval)
        );
    }
    if over_host_limit > 0 {
        log::warn!(
            "account {name}: {over_host_limit} folders get no IDLE connection: {} allows {} connections (max_connections_per_host), one of them kept for fetching; polling them every {}",
            account.server.host,
            Slots::global().limit(&account.server.host).unwrap_or(host_limit),
            secs(account.watch.poll_interval)
        );
    }
    polled > 0 || over_host_limit > 0
}

/// One folder's IDLE connection, in its own thread.
struct Idler {
    stop: StopFlag,
    /// The connection's socket while there is one, to shut down on stop.
    socket: Arc<Mutex<Option<TcpStream>>>,
    thread: JoinHandle<()>,
}

impl Idler {
    fn start(
        account: &Account,
        folder: ChosenFolder,
        events: Sender<Event>,
        account_stop: &StopFlag,
        place: IdlePlace,
    ) -> Idler {
        // The account's flag: stopping the account stops its folders.
        let stop = account_stop.clone();
        let socket = Arc::new(Mutex::new(None));
        let account = account.clone();
        let thread_stop = stop.clone();
        let thread_socket = socket.clone();
        let thread = thread::Builder::new()
            .name(format!("idle {} {}", account.name, folder.config_name))
            .spawn(move || {
                // The IDLE place is the thread's while it runs.
                idle_folder(
                    &account,
                    &folder,
                    &events,
                    &thread_stop,
                    &thread_socket,
                    &place,
                )
            })
            .expect("spawning a thread");
        Idler {
            stop,
            socket,
            thread,
        }
    }

    /// Stops the thread, interrupting a blocked IDLE read.
    fn stop(&self) {
        self.stop.set();
        if let Some(socket) = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Keeps an IDLE connection on one folder, reconnecting with backoff.
fn idle_folder(
    account: &Account,
    folder: &ChosenFolder,
    events: &Sender<Event>,
    stop: &StopFlag,
    socket: &Mutex<Option<TcpStream>>,
    place: &IdlePlace,
) {
    let mut backoff = Backoff::default();
    while !stop.is_set() {
        // The `imap` crate asserts things about the server's answers to
        // IDLE; a server breaking them costs a reconnect, not the thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            idle_session(account, folder, events, stop, socket, &mut backoff, place)
        }))
        .unwrap_or_else(|_| Err(Error::Protocol("unexpected answer to IDLE".into())));
        if stop.is_set() {
            break;
        }
        let delay = backoff.next_delay();
        let why = match result {
            Ok(Ended::Reauthenticate) => continue,
            Ok(Ended::ByServer) => "the server ended the IDLE session".to_string(),
            Err(e) => e.to_string(),
        };
        log::error!(
            "account {}: {}: {why}; reconnecting in {}",
            account.name,
            folder.config_name,
            secs(delay)
        );
        stop.sleep(delay);
    }
}

/// How an IDLE session ended without an error.
enum Ended {
    /// Stopped, or the server ended it.
    ByServer,
    /// Its OAuth2 access token is about to expire: log in anew at once
    /// with a fresh one.
    Reauthenticate,
}

/// What ended one IDLE.
enum Woken {
    NewMail,
    Renew,
    Bye,
}

/// One IDLE session: connect, `EXAMINE`, then IDLE until something
/// happens, telling the account, and IDLE again. Returns on stop (`Ok`)
/// or when the connection fails.
fn idle_session(
    account: &Account,
    folder: &ChosenFolder,
    events: &Sender<Event>,
    stop: &StopFlag,
    slot: &Mutex<Option<TcpStream>>,
    backoff: &mut Backoff,
    place: &IdlePlace,
) -> Result<Ended> {
    let name = &account.name;
    let folder_name = &folder.config_name;
    // Held while the session lasts (IDLE places keep these below the
    // host's limit).
    let _slot = place
        .slot(&|| stop.is_set())
        .ok_or_else(|| run::stopped_waiting(&account.server.host))?;
    let password = secret::resolve(&account.secret)?;
    let LoggedIn {
        mut session,
        caps,
        socket,
        ..
    } = imap_source::connect_session(account, password.as_deref().map(String::as_str))?;
    drop(password);
    // With built-in OAuth2 the connection is logged in anew before the
    // token it logged in with expires (the one just used is the cached
    // one this asks for).
    let reauthenticate_at = account
        .oauth2
        .as_ref()
        .and_then(|o| crate::oauth::access_token(o).ok())
        .and_then(|t| t.renew_at())
        .map(|at| {
            let left = (at - crate::oauth::store::now()).max(1) as u64;
            Instant::now() + Duration::from_secs(left)
        });
    {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if stop.is_set() {
            let _ = session.logout();
            return Ok(Ended::ByServer);
        }
        *slot = socket.try_clone().ok();
    }
    if !caps.contains("IDLE") {
        return Err(Error::Protocol("the server no longer offers IDLE".into()));
    }
    session
        .examine(&folder.server_name)
        .map_err(|e| imap_error(&format!("EXAMINE {folder_name}"), e))?;
    let _ = session.take_all_unsolicited();
    log::info!("account {name}: {folder_name}: connected, idling");
    backoff.reset();
    let _ = events.send(Event::Connected(folder_name.clone()));
    let mut renewals = 0u64;
    while !stop.is_set() {
        let mut renew = account.watch.idle_renew;
        if let Some(at) = reauthenticate_at {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::info!(
                    "account {name}: {folder_name}: logging in anew before the OAuth2 token expires"
                );
                let _ = session.logout();
                return Ok(Ended::Reauthenticate);
            }
            renew = renew.min(left);
        }
        let woken = {
            let mut handle = session.idle();
            handle.timeout(renew).keepalive(false);
            let mut woken = Woken::Renew;
            let outcome = handle.wait_while(|response| {
                woken = match response {
                    UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => {
                        Woken::NewMail
                    }
                    UnsolicitedResponse::Bye { .. } => Woken::Bye,
                    // Flag changes and expunges (our own fetch deleting)
                    // are no reason to fetch.
                    _ => return true,
                };
                false
            });
            // `wait_while` leaves the socket without a read timeout; the
            // DONE that ends the IDLE (when `handle` drops) and everything
            // after must not wait forever on a dead server.
            let _ = socket.set_read_timeout(Some(account.server.timeout));
            match outcome {
                Ok(WaitOutcome::MailboxChanged) => woken,
                Ok(WaitOutcome::TimedOut) => Woken::Renew,
                Err(_) if stop.is_set() => return Ok(Ended::ByServer),
                Err(e) => return Err(imap_error("IDLE", e)),
            }
        };
        match woken {
            Woken::NewMail => {
                log::info!("account {name}: {folder_name}: woken by new mail");
                let _ = events.send(Event::Changed(folder_name.clone()));
            }
            Woken::Renew => {
                renewals += 1;
                log::debug!("account {name}: {folder_name}: renewing IDLE ({renewals})");
            }
            Woken::Bye => {
                return Err(Error::Server(
                    "the server closed the IDLE connection".into(),
                ))
            }
        }
        // Anything that changed between the end of that IDLE and the next
        // is reported in answer to this NOOP.
        session.noop().map_err(|e| imap_error("NOOP", e))?;
        let changed = session.take_all_unsolicited().any(|r| {
            matches!(
                r,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            )
        });
        if changed {
            let _ = events.send(Event::Changed(folder_name.clone()));
        }
    }
    // Stopped between IDLEs: say goodbye.
    let _ = session.logout();
    Ok(Ended::ByServer)
}

/// The one mapping of the `imap` crate's errors, shared with the source.
use crate::source::imap::imap_error;

/// The `imap` crate sets the read timeout that bounds an IDLE through
/// this (RFC 2177's 29 minutes, or `idle_renew`).
impl SetReadTimeout for imap_source::Conn {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> imap::error::Result<()> {
        let tcp = match self.get_ref().get_ref() {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        };
        tcp.set_read_timeout(timeout).map_err(imap::Error::Io)
    }
}

/// Reconnect delays: exponential from `BACKOFF_FIRST`, capped at
/// `BACKOFF_CAP`, each with ±25% jitter so that many accounts (or many
/// mailretr users behind one server) do not reconnect in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(BACKOFF_FIRST, BACKOFF_CAP)
    }
}

impl Backoff {
    /// Delays starting at `first`, doubling up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            next: first,
            first,
            cap,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        jitter(delay)
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `delay` scaled by a random factor in [0.75, 1.25). The randomness is
/// the standard library's per-process hash seed; nothing here needs more.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let factor = 0.75 + (random % 1000) as f64 / 2000.0;
    delay.mul_f64(factor)
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<f64> = (0..7).map(|_| b.next_delay().as_secs_f64()).collect();
        for (delay, nominal) in delays.iter().zip([1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]) {
            assert!(
                *delay >= nominal * 0.75 && *delay < nominal * 1.25,
                "{delays:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(1250));
    }

    #[test]
    fn jitter_varies() {
        let d = Duration::from_secs(100);
        let seen: std::collections::HashSet<Duration> = (0..20).map(|_| jitter(d)).collect();
        assert!(seen.len() > 1);
    }

    #[test]
    fn stop_flag_cuts_a_sleep_short() {
        let stop = StopFlag::default();
        let other = stop.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            other.set();
        });
        let started = Instant::now();
        assert!(stop.sleep(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    const TWO: &str = r#"
[general]
state_dir = "/tmp/st"
hostname = "h"
[[account]]
name = "a"
protocol = "imap"
host = "h"
user = "u"
[[account]]
name = "b"
protocol = "pop3"
host = "h"
user = "u"
"#;

    #[test]
    fn selection_and_change_detection() {
        let c = config(TWO);
        assert_eq!(selected(&c, &[], None).unwrap(), vec![0, 1]);
        assert_eq!(selected(&c, &["b".into()], None).unwrap(), vec![1]);
        assert!(selected(&c, &["zz".into()], None).is_err());
        // "a" and "b" by the documented hash: shards of 2.
        let (a, b) = (
            crate::shard::shard_of("a", 2),
            crate::shard::shard_of("b", 2),
        );
        let one = Some(Shard { index: a, count: 2 });
        assert!(selected(&c, &[], one).unwrap().contains(&0));
        assert_eq!(selected(&c, &[], one).unwrap().contains(&1), a == b);
        if a != b {
            assert!(selected(&c, &["b".into()], one).is_err());
        }

        let changed = config(&TWO.replace(
            "name = \"b\"\nprotocol = \"pop3\"\nhost = \"h\"",
            "name = \"b\"\nprotocol = \"pop3\"\nhost = \"other\"",
        ));
        assert_eq!(
            Settings::of(&c, &c.accounts[0]),
            Settings::of(&changed, &changed.accounts[0])
        );
        assert_ne!(
            Settings::of(&c, &c.accounts[1]),
            Settings::of(&changed, &changed.accounts[1])
        );
    }
}
