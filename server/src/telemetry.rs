//! Logging set-up: `RUST_LOG`-style filtering (default `info`), text or JSON lines, each
//! carrying this node's ID (`node=…` first in a text line, a `"node"` field in JSON), so the
//! lines of several nodes can be told apart once collected together.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::LogFormat;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, node: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .event_format(WithNode {
                inner: tracing_subscriber::fmt::format().json(),
                node: serde_json::to_string(node).unwrap_or_default(),
                json: true,
            })
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init(),
        LogFormat::Text => builder
            .event_format(WithNode {
                inner: tracing_subscriber::fmt::format(),
                node: node.to_owned(),
                json: false,
            })
            .init(),
    }
}

/// An event format that adds the node ID to every line of `inner`.
struct WithNode<F> {
    inner: F,
    /// The ID as written: plain for text, a JSON string for JSON.
    node: String,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithNode<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !self.json {
            write!(writer, "node={} ", self.node)?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node\":{},{rest}", self.node),
            None => writer.write_str(&line),
        }
    }
}
