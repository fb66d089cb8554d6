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
    /// Seed the demo catalog into an empty database and exit.
    SeedDemo,
    /// Print the effective configuration, secrets redacted.
    Config,
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
    telemetry::init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wxshop: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "wxshop failed");
            eprintln!("wxshop: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            tracing::info!(address = %app.local_addr(), "listening on http://{}", app.local_addr());
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let db = Db::connect_lazy(&config)?;
            db.migrate().await?;
            tracing::info!(database = db.dialect.name(), "migrations applied");
            db.close().await;
            Ok(())
        }
        Command::SeedDemo => {
            if config.mode == crate::config::Mode::Production {
                anyhow::bail!("seed-demo writes demo data and is refused in production mode");
            }
            let db = Db::connect_lazy(&config)?;
            db.migrate().await?;
            let seeded = catalog::seed::seed_demo_catalog(&db).await?;
            if seeded {
                tracing::info!("demo catalog seeded");
            } else {
                tracing::info!("the catalog is not empty; nothing seeded");
            }
            db.close().await;
            Ok(())
        }
        // Printed before the runtime starts (see `main`); nothing to do here.
        Command::Config => Ok(()),
    }
}
