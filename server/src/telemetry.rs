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
    // `init` also forwards the `log` crate's records, as the builder's own `init` did.
    tracing_subscriber::util::SubscriberInitExt::init(subscriber(
        format,
        node,
        filter,
        std::io::stderr,
    ));
}

/// The subscriber `init` installs, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    node: &str,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .event_format(WithNode {
                    inner: tracing_subscriber::fmt::format().json(),
                    node: serde_json::to_string(node).unwrap_or_default(),
                    json: true,
                })
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .finish(),
        ),
        LogFormat::Text => Box::new(
            builder
                .event_format(WithNode {
                    inner: tracing_subscriber::fmt::format(),
                    node: node.to_owned(),
                    json: false,
                })
                .finish(),
        ),
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = subscriber(format, "lianxin-2", EnvFilter::new("info"), move || {
            writer.clone()
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(doc = "abc", "merged");
        });
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn every_line_names_the_node() {
        let text = logged(LogFormat::Text);
        assert!(text.starts_with("node=lianxin-2 "), "{text}");
        assert!(text.contains("merged"), "{text}");
        let json: serde_json::Value = serde_json::from_str(logged(LogFormat::Json).trim()).unwrap();
        assert_eq!(json["node"], "lianxin-2");
        assert_eq!(json["fields"]["message"], "merged");
        assert_eq!(json["fields"]["doc"], "abc");
    }
}
