//! Command line: `wxshop [--config FILE] [serve | migrate | seed-demo | config]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::db::Db;
use crate::startup::Application;
use crate::{catalog, telemetry};

#[derive(Debug, Parser)]
#[command(name = "wxshop", version, about = "Backend for WeChat mini-program shops")]
pub struct Cli {
    /// TOML configuration file (default: ./wxshop.toml when it exists).
    #[arg(long, global = true, env = "WXSHOP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Seed the demo catalog into an empty database and exit; with --users/--orders, also load-test data.
    SeedDemo {
        /// Users to create (for load tests).
        #[arg(long, default_value_t = 0)]
        users: usize,
        /// Historical orders to create, spread over the new users.
        #[arg(long, default_value_t = 0)]
        orders: usize,
    },
    /// Print access tokens for the first N users that have an address, one `user_id token address_id` line each,
    /// for load generators (dev mode only: they are signed with the configured key). With --orders, the lines are
    /// `user_id token order_id…` (up to 10 of the user's orders), the benchmark's pairs format.
    DevTokens {
        #[arg(long, default_value_t = 1_000)]
        count: usize,
        #[arg(long)]
        orders: bool,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Manage back-office accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run the WeChat simulator alone (development and tests only; refused in production mode).
    Simulator {
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = crate::simulator::SIM_APP_ID)]
        app_id: String,
        #[arg(long, default_value = crate::simulator::SIM_APP_SECRET)]
        app_secret: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account. The password is read from `--password-file`, or else the first line of stdin.
    Create {
        #[arg(long)]
        username: String,
        /// `admin`, `operator` or `viewer`.
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// Every how many tasks a multi-thread runtime worker takes one from the global queue before its own run queue.
/// Under many connections a worker's local queue (256 tasks) overflows into the global queue, and tokio's
/// self-tuned interval (~200 µs of polls, ~10 tasks of ours) left the overflowed connections waiting many rounds:
/// the p99 of order by id at c400 was 3.7× its p50. Measured with one worker (bench/RESULTS.md): p99 44.8 → 17.9
/// ms, throughput 35.4k → 37.0k RPS, c64 unchanged; 1 starves the local queue (p99 140 ms), 8 is half-way (28.6 ms).
const GLOBAL_QUEUE_INTERVAL: u32 = 4;

/// The async runtime. On one core (`taskset`, a container's CPU quota) a current-thread runtime: the tasks run on
/// the thread that also polls for I/O, in one unbounded first-in-first-out queue, so a connection never waits behind
/// an overflowed queue and no second thread takes turns with it on the core. Side by side on one core (bench/
/// RESULTS.md): order by id +7-10% RPS at c64 and c400, p99 lower in every scenario. On more cores, the multi-thread
/// runtime, one worker per core. (The test suite already runs every route on current-thread runtimes: `tokio::test`.)
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().global_queue_interval(GLOBAL_QUEUE_INTERVAL).build()
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("wxshop: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config) = cli.command {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    let telemetry = match telemetry::init_tracing(&config) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("wxshop: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wxshop: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config));
    // Background tasks stop with the runtime; then the spans still buffered are sent.
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "wxshop failed");
            eprintln!("wxshop: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The password from a file (first line) or from stdin (first line), never from the command line.
fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        anyhow::bail!("no password given (use --password-file or pipe it on stdin)");
    }
    Ok(password)
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(
                address = %app.local_addr(),
                ops_address = %app.ops_addr(),
                "listening on http://{} (metrics and profiling on http://{})",
                app.local_addr(),
                app.ops_addr()
            );
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let db = Db::connect_lazy(&config)?;
            db.migrate().await?;
            tracing::info!(database = db.dialect.name(), "migrations applied");
            db.close().await;
            Ok(())
        }
        Command::SeedDemo { users, orders } => {
            if config.mode == crate::config::Mode::Production {
                anyhow::bail!("seed-demo writes demo data and is refused in production mode");
            }
            let db = Db::connect_lazy(&config)?;
            db.migrate().await?;
            let seeded = catalog::seed::seed_demo_catalog(&db).await?;
            if seeded {
                tracing::info!("demo catalog seeded");
            } else {
                tracing::info!("the catalog is not empty; no catalog seeded");
            }
            if users > 0 || orders > 0 {
                let app_id = config.wechat.app_id.clone().unwrap_or_else(|| crate::simulator::SIM_APP_ID.to_owned());
                let done = crate::demo_data::seed_load_test_data(&db, &app_id, users, orders).await?;
                println!("seeded {} users, {} orders, {} order items", done.users, done.orders, done.items);
            }
            db.close().await;
            Ok(())
        }
        Command::DevTokens { count, orders } => {
            if config.mode == crate::config::Mode::Production {
                anyhow::bail!("dev-tokens mints access tokens and is refused in production mode");
            }
            let db = Db::connect_lazy(&config)?;
            let lines = crate::demo_data::dev_tokens(&db, &config.auth, count, orders).await?;
            db.close().await;
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        // Printed before the runtime starts (see `main`); nothing to do here.
        Command::Config => Ok(()),
        Command::Admin(AdminCommand::Create { username, role, password_file }) => {
            let password = read_password(password_file.as_deref())?;
            let db = Db::connect_lazy(&config)?;
            db.migrate().await?;
            let id = crate::admins::service::create_admin(&db, &username, &role, &password).await?;
            db.close().await;
            println!("created admin account {username} (id {id}, role {role})");
            Ok(())
        }
        Command::Simulator { listen, app_id, app_secret } => {
            if config.mode == crate::config::Mode::Production {
                anyhow::bail!("the WeChat simulator is refused in production mode");
            }
            crate::simulator::serve(listen, &app_id, &app_secret).await
        }
    }
}
