//! The hand-off queue of the scale-out gate: each sale's Redis stream of won purchases (appended by the decide
//! script), read by the order hand-off workers of every instance through one consumer group.

use redis::streams::{StreamAutoClaimReply, StreamReadReply};

use super::redis_gate::RedisGate;
use super::GROUP;

/// A won purchase read from a sale's stream.
pub struct QueuedEntry {
    /// The stream entry id, acknowledged once the purchase is done.
    pub entry: String,
    pub purchase_id: String,
    /// Delivered before and left unacknowledged: its consumer died, or its order failed and is being retried.
    pub redelivered: bool,
}

impl RedisGate {
    /// Won purchases to turn into orders: first those a consumer took and left unfinished for `claim_idle_ms`
    /// (it died, or the order failed and is being retried), then new ones.
    pub async fn next_batch(
        &self,
        sale_id: i64,
        consumer: &str,
        claim_idle_ms: u64,
        count: usize,
    ) -> redis::RedisResult<Vec<QueuedEntry>> {
        let queue = self.keys(sale_id).queue;
        let mut conn = self.redis.conn();
        let claimed: StreamAutoClaimReply = match redis::cmd("XAUTOCLAIM")
            .arg(&queue)
            .arg(GROUP)
            .arg(consumer)
            .arg(claim_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
        {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut batch: Vec<QueuedEntry> = claimed
            .claimed
            .into_iter()
            .filter_map(|entry| {
                let purchase_id = entry.get::<String>("pid")?;
                Some(QueuedEntry { entry: entry.id, purchase_id, redelivered: true })
            })
            .collect();
        if batch.len() < count {
            let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count - batch.len())
                .arg("STREAMS")
                .arg(&queue)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            for key in fresh.map(|r| r.keys).unwrap_or_default() {
                batch.extend(key.ids.into_iter().filter_map(|e| {
                    let purchase_id = e.get::<String>("pid")?;
                    Some(QueuedEntry { entry: e.id, purchase_id, redelivered: false })
                }));
            }
        }
        Ok(batch)
    }

    /// Done with a stream entry: acknowledged and removed.
    pub async fn ack(&self, sale_id: i64, entry_id: &str) -> redis::RedisResult<()> {
        let queue = self.keys(sale_id).queue;
        redis::pipe()
            .cmd("XACK")
            .arg(&queue)
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(&queue)
            .arg(entry_id)
            .ignore()
            .query_async::<()>(&mut self.redis.conn())
            .await
    }

    /// Hands a decision off again (reconciliation found it neither in the database nor on its way there).
    pub async fn requeue(&self, sale_id: i64, purchase_id: &str) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(self.keys(sale_id).queue)
            .arg("*")
            .arg("pid")
            .arg(purchase_id)
            .query_async::<String>(&mut self.redis.conn())
            .await
            .map(|_| ())
    }

    /// Purchase ids waiting in the sale's stream (delivered or not).
    pub async fn queued_ids(&self, sale_id: i64) -> redis::RedisResult<Vec<String>> {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys(sale_id).queue)
            .arg("-")
            .arg("+")
            .query_async(&mut self.redis.conn())
            .await?;
        Ok(entries.ids.into_iter().filter_map(|e| e.get::<String>("pid")).collect())
    }
}
