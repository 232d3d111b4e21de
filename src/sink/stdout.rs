//! The stdout sink: JSON Lines, acknowledged once flushed.

use tokio::io::AsyncWriteExt;

#[derive(Debug)]
pub struct StdoutSink {
    out: tokio::io::Stdout,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {
            out: tokio::io::stdout(),
        }
    }

    pub async fn write_flushed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes).await?;
        self.out.flush().await
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}
