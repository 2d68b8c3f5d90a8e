//! `mqadmin`'s RocketMQ subcommands (and RaftMQ's `leaderTransfer` / `groupStatus`) over
//! [`raftmq_client::admin::AdminClient`].
//!
//! ```text
//! argv --clap (cli)--> Command --run--> one module per area --> Report { text, json }
//!                                                          --> stdout (text, or --json)
//! error --> stderr `mqadmin <command>: <what went wrong>` and exit code 1
//! ```
//! Layout: [`cli`] the flags; `topic` (updateTopic, deleteTopic, topicList, topicRoute,
//! topicStatus); `cluster` (clusterList, brokerStatus, leaderTransfer, groupStatus);
//! `consumer` (consumerProgress, resetOffsetByTime); `message` (queryMsgById,
//! queryMsgByKey, queryMsgByOffset, sendMessage, consumeMessage); `format` (shared
//! text shapes). `playground` is [`crate::playground`]. Unlike RocketMQ's `mqadmin`, every
//! failure exits non-zero.

pub mod cli;
mod cluster;
mod consumer;
mod format;
mod message;
mod topic;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use raftmq_client::admin::AdminClient;
use serde_json::Value;
use tracing::Instrument;

pub use cli::{Cli, Command, Global};

/// What a subcommand prints: RocketMQ's text, or JSON with `--json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Text output, newline-terminated lines.
    pub text: String,
    /// The same facts as JSON.
    pub json: Value,
}

/// The subcommand's name as typed (`updateTopic`).
pub fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::UpdateTopic(_) => "updateTopic",
        Command::DeleteTopic(_) => "deleteTopic",
        Command::TopicList(_) => "topicList",
        Command::TopicRoute(_) => "topicRoute",
        Command::TopicStatus(_) => "topicStatus",
        Command::ClusterList(_) => "clusterList",
        Command::BrokerStatus(_) => "brokerStatus",
        Command::ConsumerProgress(_) => "consumerProgress",
        Command::QueryMsgById(_) => "queryMsgById",
        Command::QueryMsgByKey(_) => "queryMsgByKey",
        Command::QueryMsgByOffset(_) => "queryMsgByOffset",
        Command::SendMessage(_) => "sendMessage",
        Command::ConsumeMessage(_) => "consumeMessage",
        Command::ResetOffsetByTime(_) => "resetOffsetByTime",
        Command::LeaderTransfer(_) => "leaderTransfer",
        Command::GroupStatus(_) => "groupStatus",
        Command::Playground(_) => "playground",
    }
}

/// The admin client for `-n`, else `NAMESRV_ADDR`, else `-Drocketmq.namesrv.addr=`.
pub fn connect(global: &Global) -> anyhow::Result<AdminClient> {
    AdminClient::from_env(global.namesrv_addr.as_deref(), global.namesrv_property())
        .context("NameServer address")
}

/// Runs one subcommand.
pub async fn run(global: &Global, cmd: Command) -> anyhow::Result<Report> {
    let admin = connect(global)?;
    let span = tracing::info_span!("mqadmin", command = command_name(&cmd));
    async move { dispatch(&admin, cmd).await }
        .instrument(span)
        .await
}

async fn dispatch(admin: &AdminClient, cmd: Command) -> anyhow::Result<Report> {
    match cmd {
        Command::UpdateTopic(a) => topic::update_topic(admin, a).await,
        Command::DeleteTopic(a) => topic::delete_topic(admin, a).await,
        Command::TopicList(a) => topic::topic_list(admin, a).await,
        Command::TopicRoute(a) => topic::topic_route(admin, a).await,
        Command::TopicStatus(a) => topic::topic_status(admin, a).await,
        Command::ClusterList(a) => cluster::cluster_list(admin, a).await,
        Command::BrokerStatus(a) => cluster::broker_status(admin, a).await,
        Command::LeaderTransfer(a) => cluster::leader_transfer(admin, a).await,
        Command::GroupStatus(a) => cluster::group_status(admin, a).await,
        Command::ConsumerProgress(a) => consumer::consumer_progress(admin, a).await,
        Command::ResetOffsetByTime(a) => consumer::reset_offset_by_time(admin, a).await,
        Command::QueryMsgById(a) => message::query_by_id(admin, a).await,
        Command::QueryMsgByKey(a) => message::query_by_key(admin, a).await,
        Command::QueryMsgByOffset(a) => message::query_by_offset(admin, a).await,
        Command::SendMessage(a) => message::send_message(admin, a).await,
        Command::ConsumeMessage(a) => message::consume_message(admin, a).await,
        Command::Playground(_) => anyhow::bail!("playground runs on its own runtime"),
    }
}

/// Runs one subcommand on a fresh runtime, prints its report (text or `--json`) and
/// returns the exit code: 1 with a one-line error on stderr for any failure.
pub fn execute(global: &Global, cmd: Command) -> ExitCode {
    let name = command_name(&cmd);
    if let Command::Playground(args) = cmd {
        // Prints its own lines and runs until Ctrl-C, on a multi-threaded runtime.
        let result = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(crate::playground::run(args)));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mqadmin {name}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                name,
                &anyhow::Error::from(e).context("cannot start the tokio runtime"),
            )
        }
    };
    if let Command::ClusterList(a) = &cmd {
        if let Some(secs) = a.interval {
            // RocketMQ's `clusterList -i`: the table again every interval, until Ctrl-C; a
            // round that fails is reported and the next one still comes.
            let every = std::time::Duration::from_secs(secs);
            loop {
                let started = std::time::Instant::now();
                let round = cli::ClusterList {
                    interval: None,
                    ..a.clone()
                };
                match rt.block_on(run(global, Command::ClusterList(round))) {
                    // Nobody reads any more (`| head`): done.
                    Ok(report) if !print_report(global, &report) => return ExitCode::SUCCESS,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = fail(name, &e);
                    }
                }
                std::thread::sleep(every.saturating_sub(started.elapsed()));
            }
        }
    }
    match rt.block_on(run(global, cmd)) {
        Ok(report) => {
            // A closed pipe (`| head`) is not a failure of the command.
            print_report(global, &report);
            ExitCode::SUCCESS
        }
        Err(e) => fail(name, &e),
    }
}

/// Writes a report to stdout, as text or (`--json`) JSON; false once stdout is closed.
fn print_report(global: &Global, report: &Report) -> bool {
    let out = if global.json {
        let mut s = serde_json::to_string_pretty(&report.json).unwrap_or_default();
        s.push('\n');
        s
    } else {
        report.text.clone()
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// The one-line error on stderr, and exit code 1.
fn fail(name: &str, e: &anyhow::Error) -> ExitCode {
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("mqadmin {name}: {line}");
    ExitCode::from(1)
}
