//! The entry point: parse flags, load the config, then serve, check once or validate.
//! Errors become one `sonde:` line on stderr and an exit code of 0, 1 or 2.

mod blackbox;
mod checks;
mod cli;
mod config;
mod exposition;
mod files;
mod keys;
mod logger;
mod metrics;
mod net;
mod problem;
mod push;
mod scheduler;
mod settings;
mod shard;
mod store;
mod sync;
mod sysfs;
mod tls;
mod units;
mod web;
mod yaml;

use std::process::ExitCode;
use std::sync::{Arc, RwLock, mpsc};
use std::time::Duration;

use checks::LoadedCheck;
use checks::module::{Found, ModuleSet};
use exposition::{Exposition, REVISION, VERSION};
use problem::Problem;
use scheduler::Scheduler;
use settings::Settings;
use store::Store;
use web::probe::{NotProbed, Probe, ProbeReply, ProbeRunner, Probes};
use web::routes::{App, ReloadReply};

/// How sonde ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// Everything went well.
    Success = 0,
    /// Something failed at run time (port taken, a check failed with `--once`).
    Failure = 1,
    /// The flags or the config are wrong.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

fn main() -> ExitCode {
    run().into()
}

fn run() -> Exit {
    let settings = match settings() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    logger::init(settings.log_level);
    // The web config is read before --config.check answers, so that appending
    // --config.check to any command line validates everything it names; the problems
    // of both files are printed together.
    let loaded = load_config(&settings);
    let web = match &settings.web_config_file {
        None => Ok(None),
        Some(path) => web::security::load(path).map(Some),
    };
    let (loaded, web) = match (loaded, web) {
        (Ok(loaded), Ok(web)) => (loaded, web),
        (loaded, web) => {
            let mut problems = loaded.err().unwrap_or_default();
            problems.extend(web.err());
            print_problems(&problems);
            return Exit::Usage;
        }
    };
    if settings.config_check {
        report_config_check(&settings, &loaded);
        return Exit::Success;
    }
    if settings.once {
        return run_once(
            loaded.checks,
            settings.push_gateway.as_deref(),
            settings.shard,
        );
    }
    let security = Arc::new(web::security::Security::new(
        settings.web_config_file.clone(),
        web,
    ));
    serve(&settings, loaded, security)
}

/// The settings from the command line and the environment; `--help` and `--version`
/// answer here, and end the program (as does a bad flag) with the returned exit.
fn settings() -> Result<Settings, Exit> {
    let raw = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("sonde: {e}");
            return Err(Exit::Usage);
        }
    };
    if raw.help {
        print!("{}", cli::help());
        return Err(Exit::Success);
    }
    if raw.version {
        println!("sonde {VERSION} (revision {REVISION})");
        return Err(Exit::Success);
    }
    settings::settings_from_args(raw).map_err(|e| {
        eprintln!("sonde: {e}");
        Exit::Usage
    })
}

/// `--config.check`'s answer: the warnings, then one line saying what is valid.
fn report_config_check(settings: &Settings, loaded: &Loaded) {
    let source = settings.config_file.as_ref().map_or_else(
        || "the built-in default config".to_string(),
        |p| p.display().to_string(),
    );
    let web_note = settings
        .web_config_file
        .as_ref()
        .map_or_else(String::new, |p| {
            format!(", web config {} is valid", p.display())
        });
    for p in &loaded.replaced {
        eprintln!("sonde: warning: {p}");
    }
    for p in &loaded.refused {
        eprintln!("sonde: warning: {p}; /probe refuses this module");
    }
    let (ready, refused) = loaded.modules.counts();
    let modules_note = if ready + refused == 0 {
        String::new()
    } else {
        format!(", {ready} probe module(s), {refused} refused")
    };
    println!(
        "sonde: {source} is valid: {} check(s){modules_note}{web_note}",
        loaded.checks.len()
    );
}

/// The config file and the blackbox config, read.
struct Loaded {
    checks: Vec<LoadedCheck>,
    modules: ModuleSet,
    /// Why the blackbox modules that were refused were (warnings, not errors).
    refused: Vec<Problem>,
    /// Modules of the config that blackbox modules of the same name replaced.
    replaced: Vec<Problem>,
}

/// Reads the config file named by the flags (or the built-in default) and the blackbox
/// config, if one is named.
fn load_config(settings: &Settings) -> Result<Loaded, Vec<Problem>> {
    let flags = config::FlagDefaults {
        check_interval: settings.check_interval,
        ignored_images: &settings.ignored_images,
        shard: settings.shard,
    };
    let config::Loaded {
        checks,
        mut modules,
    } = config::load(settings.config_file.as_deref(), &flags)?;
    let report = match &settings.blackbox_config_file {
        None => blackbox::Report::default(),
        Some(path) => blackbox::load(path, &mut modules)?,
    };
    Ok(Loaded {
        checks,
        modules,
        refused: report.refused,
        replaced: report.replaced,
    })
}

/// Logs which blackbox modules were refused or replaced one of the config (at start-up
/// and after a reload).
fn log_modules(loaded: &Loaded) {
    for p in &loaded.replaced {
        log::warn!("msg=\"probe module replaced\" problem={:?}", p.to_string());
    }
    for p in &loaded.refused {
        log::warn!(
            "msg=\"probe module refused; /probe answers 400 for it\" problem={:?}",
            p.to_string()
        );
    }
}

/// The modules `/probe` runs, replaced whole by a reload.
type SharedModules = Arc<RwLock<Arc<ModuleSet>>>;

/// Runs `/probe` requests with the current modules (the web layer's view of them).
struct ModuleRunner(SharedModules);

impl ProbeRunner for ModuleRunner {
    fn prepare(
        &self,
        module: &str,
        target: &str,
        scrape_timeout: Option<f64>,
        debug: bool,
    ) -> Result<Probe, NotProbed> {
        let modules = Arc::clone(&sync::read(&self.0));
        match modules.find(module) {
            Found::Ready(m) => {
                let target = target.to_string();
                Ok(Box::new(move || {
                    let outcome = m.run(&target, scrape_timeout, debug);
                    ProbeReply {
                        success: outcome.success,
                        body: outcome.body,
                    }
                }))
            }
            Found::Refused(why) => Err(NotProbed {
                known: true,
                message: format!("module {module:?} is refused: {why}"),
            }),
            Found::Unknown => Err(NotProbed {
                known: false,
                message: format!("unknown module {module:?}"),
            }),
        }
    }
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("sonde: {p}");
    }
}

/// Runs every check once and prints the exposition (without `process_*`, which would
/// collide with node_exporter's own when the output feeds its textfile collector), or
/// pushes it to a Pushgateway.
fn run_once(checks: Vec<LoadedCheck>, gateway: Option<&str>, shard: shard::Shard) -> Exit {
    let store = Store::sharded(shard);
    Scheduler::start(&store, checks, true).wait();
    let text = exposition::render_store(&store).to_text();
    print!("{text}");
    if let Some(gateway) = gateway
        && let Err(e) = push::push(gateway, &text)
    {
        eprintln!("sonde: {e}");
        return Exit::Failure;
    }
    let all_ok = store
        .slots()
        .iter()
        .all(|s| s.latest().is_some_and(|snap| snap.success));
    if all_ok { Exit::Success } else { Exit::Failure }
}

/// What the main thread reacts to while serving.
enum Control {
    Stop(&'static str),
    Reload(Option<ReloadReply>),
}

fn serve(settings: &Settings, loaded: Loaded, security: Arc<web::security::Security>) -> Exit {
    let (control_tx, control_rx) = mpsc::channel::<Control>();
    if let Err(e) = watch_signals(control_tx.clone()) {
        eprintln!("sonde: cannot install signal handlers: {e}");
        return Exit::Failure;
    }
    let listener = match web::bind(&settings.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sonde: cannot listen on {}: {e}", settings.listen_text);
            return Exit::Failure;
        }
    };
    let tls = security.current().tls.is_some();
    let store = Arc::new(Store::sharded(settings.shard));
    log_modules(&loaded);
    let modules: SharedModules = Arc::new(RwLock::new(Arc::new(loaded.modules)));
    let mut scheduler = Scheduler::start(&store, loaded.checks, false);
    let reload_tx = std::sync::Mutex::new(control_tx);
    let mut exposition = Exposition::new(Arc::clone(&store));
    if security.has_file() {
        exposition = exposition.with_web_config_status(security.reload_status());
    }
    let app = App {
        store: Arc::clone(&store),
        exposition: Arc::new(exposition),
        telemetry_path: settings.telemetry_path.clone(),
        reload: Box::new(move |reply| {
            sync::lock(&reload_tx)
                .send(Control::Reload(Some(reply)))
                .is_ok()
        }),
        lifecycle: settings.enable_lifecycle,
        probes: Arc::new(Probes::new(
            Box::new(ModuleRunner(Arc::clone(&modules))),
            settings.probe_concurrency,
        )),
        targets_cache: Default::default(),
    };
    let server = match web::server::Server::start(
        listener,
        Arc::new(app),
        web::server::Limits::default(),
        security,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde: cannot start the web server: {e}");
            return Exit::Failure;
        }
    };
    log::info!(
        "msg=\"sonde started\" version={VERSION} revision={REVISION} address={} tls={} checks={}",
        server.local_addr(),
        tls,
        store.slots().len()
    );
    loop {
        match control_rx.recv() {
            Ok(Control::Stop(signal)) => {
                log::info!("msg=\"shutting down\" signal={signal}");
                break;
            }
            Err(_) => break,
            Ok(Control::Reload(reply)) => {
                let outcome = reload(settings, &mut scheduler, &store, &modules);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    server.stop();
    scheduler.stop(Duration::from_millis(1500));
    Exit::Success
}

/// Re-reads the config and the blackbox config: valid ones replace the running checks
/// (unchanged ones keep running) and the modules; an invalid one is logged and the
/// running checks and modules carry on.
fn reload(
    settings: &Settings,
    scheduler: &mut Scheduler,
    store: &Store,
    modules: &SharedModules,
) -> Result<(), String> {
    match load_config(settings) {
        Ok(loaded) => {
            log_modules(&loaded);
            *sync::write(modules) = Arc::new(loaded.modules);
            scheduler.reload(store, loaded.checks);
            store.record_reload(true);
            log::info!("msg=\"config reloaded\" checks={}", store.slots().len());
            Ok(())
        }
        Err(problems) => {
            store.record_reload(false);
            for p in &problems {
                log::error!(
                    "msg=\"config reload failed; keeping the running config\" problem={:?}",
                    p.to_string()
                );
            }
            Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// Forwards SIGTERM/SIGINT (stop) and SIGHUP (reload) to the main thread.
fn watch_signals(tx: mpsc::Sender<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("sonde-signals".into())
        .stack_size(64 << 10)
        .spawn(move || {
            for signal in signals.forever() {
                let control = match signal {
                    SIGHUP => Control::Reload(None),
                    SIGINT => Control::Stop("SIGINT"),
                    _ => Control::Stop("SIGTERM"),
                };
                if tx.send(control).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
