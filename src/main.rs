use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth::auth::{Role, mint_team_token};
use berth::config::Settings;
use berth::startup::Application;
use clap::{Parser, Subcommand};

mod watch;

/// Berth: an authenticated HTTP/JSON control plane for the Docker Engine.
/// Configuration comes from the environment (BERTH_*, DOCKER_HOST); see the README.
#[derive(Parser)]
#[command(name = "berth", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print a token signed with BERTH_JWT_SECRET.
    Token {
        /// Subject: the owner of the jobs made with this token.
        #[arg(long)]
        sub: String,
        /// viewer, operator or admin (repeatable).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Team (the `team` claim, or the one BERTH_JWT_TEAM_CLAIM names); none: `default`.
        #[arg(long)]
        team: Option<String>,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print the OpenAPI document (JSON).
    Openapi,
    /// Follow a job's progress and log from a Berth server (exit 0 succeeded, 1 failed,
    /// canceled or interrupted, 2 usage or connection errors); `--events`: every job's
    /// state changes.
    Watch(watch::WatchArgs),
    /// Copy the SQLite job store (jobs, their events, the audit log) into PostgreSQL, to go
    /// from one process to several replicas. Stop the server first. Running jobs are copied
    /// as running: the first replica to start adopts them and ends them `interrupted`.
    /// Queued builds need their spooled context at the same path. Safe to run again: it
    /// copies only the rows PostgreSQL lacks, then checks that every row is there.
    Migrate {
        /// The database to copy into: postgres://user[:password]@host[:port]/database.
        #[arg(long, env = "BERTH_DATABASE_URL", hide_env_values = true)]
        to: String,
        /// The data dir whose berth.db is copied.
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role: use viewer, operator or admin"))
}

fn main() -> std::process::ExitCode {
    berth::startup::tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::Watch(args)) = cli.command {
        return watch::run(args);
    }
    if let Err(e) = run(cli) {
        eprintln!("berth: {e:#}");
        std::process::exit(1);
    }
    std::process::ExitCode::SUCCESS
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            let spec = berth::startup::openapi();
            println!("{}", spec.to_pretty_json().context("serializing the spec")?);
            Ok(())
        }
        Command::Token { sub, roles, team, ttl } => {
            let settings = Settings::from_env()?;
            println!("{}", mint_team_token(&settings.jwt, &sub, &roles, team.as_deref(), ttl)?);
            Ok(())
        }
        Command::Watch(_) => unreachable!("handled in main"),
        Command::Migrate { to, data_dir } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let report = runtime.block_on(berth::store::migrate::migrate(&data_dir, &to))?;
            print!("{report}");
            Ok(report.verified()?)
        }
        Command::Serve => {
            let settings = Settings::from_env()?;
            berth::telemetry::init(settings.log_format);
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                tracing::info!(port = app.port(), "berth listening");
                app.run_until_stopped().await
            })
        }
    }
}
