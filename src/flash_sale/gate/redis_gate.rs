//! The scale-out gate: one Lua script per decision over the sale's keys (one Redis Cluster slot); a won
//! decision is recorded and appended to the sale's stream in the same script.

use std::collections::HashMap;

use redis::Script;

use super::{new_purchase_id, Attempt, Decision, KEEP_AFTER_CLOSE_MS};
use crate::db::Db;
use crate::error::AppError;
use crate::flash_sale::store::{self, PurchaseRow, SaleRow};
use crate::kv::Redis;

/// A sale's keys; `{fs:<id>}` is the hash tag, so they live in one Redis Cluster slot.
pub struct SaleKeys {
    pub sale: String,
    pub bought: String,
    pub keys: String,
    pub decided: String,
    pub queue: String,
}

/// A decision as Redis recorded it (`decided` hash: `uid|qty|addr|state|decided_at|key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub user_id: i64,
    pub quantity: i64,
    pub address_id: i64,
    /// `held` or `released`.
    pub state: String,
    pub decided_at: i64,
    pub key: String,
}

impl Decided {
    pub fn parse(value: &str) -> Option<Decided> {
        let mut parts = value.splitn(6, '|');
        Some(Decided {
            user_id: parts.next()?.parse().ok()?,
            quantity: parts.next()?.parse().ok()?,
            address_id: parts.next()?.parse().ok()?,
            state: parts.next()?.to_owned(),
            decided_at: parts.next()?.parse().ok()?,
            key: parts.next()?.to_owned(),
        })
    }
}

pub struct RedisGate {
    pub(super) redis: Redis,
    decide: Script,
    settle: Script,
    init: Script,
    sync: Script,
    recount: Script,
}

const DECIDE: &str = r#"
local s = redis.call('HMGET', KEYS[1], 'remaining', 'limit', 'starts_at', 'closes_at', 'expire_at')
if not s[1] then return {'unknown'} end
local field = ARGV[2] .. ':' .. ARGV[5]
local prior = redis.call('HGET', KEYS[3], field)
if prior then return {'replay', prior} end
local now = tonumber(ARGV[1])
if now >= tonumber(s[4]) then return {'ended'} end
if now < tonumber(s[3]) then return {'not_started'} end
local remaining = tonumber(s[1])
if remaining <= 0 then return {'sold_out', '0'} end
local qty = tonumber(ARGV[3])
local bought = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if bought + qty > tonumber(s[2]) then return {'limit_reached'} end
if remaining < qty then return {'sold_out', tostring(remaining)} end
redis.call('HINCRBY', KEYS[1], 'remaining', -qty)
redis.call('HINCRBY', KEYS[2], ARGV[2], qty)
redis.call('HSET', KEYS[3], field, ARGV[6] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|held|' .. ARGV[1] .. '|' .. ARGV[5])
redis.call('XADD', KEYS[5], '*', 'pid', ARGV[6])
for i = 2, 5 do redis.call('PEXPIREAT', KEYS[i], s[5]) end
return {'won', tostring(remaining - qty)}
"#;

/// Moves one decision to `held` or `released` (ARGV[2]), adjusting stock and the buyer's count only if it was
/// not there already: safe to repeat. A decision Redis never saw (its data was lost) is adopted.
const SETTLE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local want = ARGV[2]
local uid, qty, addr, state, ts, key = ARGV[4], ARGV[5], ARGV[6], nil, ARGV[3], ARGV[7]
local d = redis.call('HGET', KEYS[3], ARGV[1])
if d then uid, qty, addr, state, ts, key = string.match(d, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$') end
if state == want then return 0 end
local record = uid .. '|' .. qty .. '|' .. addr .. '|' .. want .. '|' .. ts .. '|' .. key
redis.call('HSET', KEYS[4], uid .. ':' .. key, ARGV[1] .. '|' .. qty .. '|' .. addr)
if state == nil and want == 'released' then
  redis.call('HSET', KEYS[3], ARGV[1], record)
  return 0
end
local n = tonumber(qty)
if want == 'held' then n = -n end
redis.call('HINCRBY', KEYS[1], 'remaining', n)
if redis.call('HINCRBY', KEYS[2], uid, -n) <= 0 then redis.call('HDEL', KEYS[2], uid) end
redis.call('HSET', KEYS[3], ARGV[1], record)
return 1
"#;

/// Builds a sale's keys from the database's purchases (ARGV[6..]: pid uid qty addr key state), unless they exist.
const INIT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local held = 0
for i = 6, #ARGV, 6 do
  local pid, uid, qty, addr, key, state = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  if state == 'held' then
    held = held + tonumber(qty)
    redis.call('HINCRBY', KEYS[2], uid, tonumber(qty))
  end
  redis.call('HSET', KEYS[3], uid .. ':' .. key, pid .. '|' .. qty .. '|' .. addr)
  redis.call('HSET', KEYS[4], pid, uid .. '|' .. qty .. '|' .. addr .. '|' .. state .. '|0|' .. key)
end
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'remaining', tonumber(ARGV[1]) - held, 'limit', ARGV[2],
  'starts_at', ARGV[3], 'closes_at', ARGV[4], 'expire_at', ARGV[5])
redis.pcall('XGROUP', 'CREATE', KEYS[5], 'orders', '0', 'MKSTREAM')
for i = 1, 5 do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
return 1
"#;

/// Applies an admin change: new stock (remaining moves by the difference), limit and window.
const SYNC: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local old = tonumber(redis.call('HGET', KEYS[1], 'stock'))
redis.call('HINCRBY', KEYS[1], 'remaining', tonumber(ARGV[1]) - old)
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'limit', ARGV[2], 'starts_at', ARGV[3], 'closes_at', ARGV[4],
  'expire_at', ARGV[5])
for i = 1, #KEYS do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
return 1
"#;

/// Recomputes `remaining` and every buyer's count from the recorded decisions; returns what it changed.
const RECOUNT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local held, per_user = 0, {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local uid, qty, _, state = string.match(all[i + 1], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|')
  if state == 'held' then
    held = held + tonumber(qty)
    per_user[uid] = (per_user[uid] or 0) + tonumber(qty)
  end
end
local fixed = 0
local want = tonumber(redis.call('HGET', KEYS[1], 'stock')) - held
if tonumber(redis.call('HGET', KEYS[1], 'remaining')) ~= want then
  redis.call('HSET', KEYS[1], 'remaining', want)
  fixed = 1
end
local users = redis.call('HGETALL', KEYS[2])
local user_fixes = 0
for i = 1, #users, 2 do
  local n = per_user[users[i]] or 0
  if tonumber(users[i + 1]) ~= n then
    user_fixes = user_fixes + 1
    if n == 0 then redis.call('HDEL', KEYS[2], users[i]) else redis.call('HSET', KEYS[2], users[i], n) end
  end
  per_user[users[i]] = nil
end
for uid, n in pairs(per_user) do
  redis.call('HSET', KEYS[2], uid, n)
  user_fixes = user_fixes + 1
end
return {fixed, user_fixes}
"#;

impl RedisGate {
    pub(super) fn new(redis: Redis) -> RedisGate {
        RedisGate {
            redis,
            decide: Script::new(DECIDE),
            settle: Script::new(SETTLE),
            init: Script::new(INIT),
            sync: Script::new(SYNC),
            recount: Script::new(RECOUNT),
        }
    }

    pub fn keys(&self, sale_id: i64) -> SaleKeys {
        let key = |name: &str| self.redis.key(&format!("{{fs:{sale_id}}}:{name}"));
        SaleKeys {
            sale: key("sale"),
            bought: key("bought"),
            keys: key("keys"),
            decided: key("decided"),
            queue: key("queue"),
        }
    }

    pub(super) async fn decide(&self, a: &Attempt<'_>) -> redis::RedisResult<Decision> {
        let k = self.keys(a.sale_id);
        let purchase_id = new_purchase_id(a.sale_id);
        let reply: Vec<String> = self
            .decide
            .key(&k.sale)
            .key(&k.bought)
            .key(&k.keys)
            .key(&k.decided)
            .key(&k.queue)
            .arg(a.now)
            .arg(a.user_id)
            .arg(a.quantity)
            .arg(a.address_id)
            .arg(a.key)
            .arg(&purchase_id)
            .invoke_async(&mut self.redis.conn())
            .await?;
        let number = |i: usize| reply.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(match reply.first().map(String::as_str) {
            Some("won") => Decision::Won { purchase_id, remaining: number(1) },
            Some("replay") => {
                let prior = reply.get(1).map(String::as_str).unwrap_or("");
                let mut parts = prior.split('|');
                Decision::Replay {
                    purchase_id: parts.next().unwrap_or("").to_owned(),
                    quantity: parts.next().and_then(|v| v.parse().ok()).unwrap_or(0),
                    address_id: parts.next().and_then(|v| v.parse().ok()).unwrap_or(0),
                }
            }
            Some("sold_out") => Decision::SoldOut { remaining: number(1) },
            Some("limit_reached") => Decision::LimitReached,
            Some("not_started") => Decision::NotStarted,
            Some("ended") => Decision::Ended,
            _ => Decision::Unknown,
        })
    }

    pub(super) fn expire_at(sale: &SaleRow) -> i64 {
        sale.closes_at() + KEEP_AFTER_CLOSE_MS
    }

    /// Builds the sale's keys from the database unless they exist; true when it built them.
    pub async fn init(&self, db: &Db, sale: &SaleRow) -> Result<bool, AppError> {
        let purchases = store::purchases_of(&db.pool, sale.id).await?;
        let k = self.keys(sale.id);
        let mut invocation = self.init.prepare_invoke();
        invocation.key(&k.sale).key(&k.bought).key(&k.keys).key(&k.decided).key(&k.queue);
        invocation
            .arg(sale.stock)
            .arg(sale.per_user_limit)
            .arg(sale.starts_at)
            .arg(sale.closes_at())
            .arg(Self::expire_at(sale));
        for p in &purchases {
            let state = if p.holds() { "held" } else { "released" };
            invocation.arg(&p.id).arg(p.user_id).arg(p.quantity).arg(p.address_id).arg(&p.idem_key).arg(state);
        }
        let built: i64 = invocation.invoke_async(&mut self.redis.conn()).await?;
        Ok(built == 1)
    }

    /// Applies the sale's current stock, limit and window; false when Redis does not have the sale.
    pub(super) async fn sync(&self, sale: &SaleRow) -> redis::RedisResult<bool> {
        let k = self.keys(sale.id);
        let done: i64 = self
            .sync
            .key(&k.sale)
            .key(&k.bought)
            .key(&k.keys)
            .key(&k.decided)
            .key(&k.queue)
            .arg(sale.stock)
            .arg(sale.per_user_limit)
            .arg(sale.starts_at)
            .arg(sale.closes_at())
            .arg(Self::expire_at(sale))
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok(done == 1)
    }

    /// Puts the decision for `p` in the state the database gives it (`held`: queued or created; else
    /// `released`). 1 when it changed something, 0 when it was so already, -1 when Redis does not have the sale.
    pub async fn settle(&self, p: &PurchaseRow, held: bool) -> redis::RedisResult<i64> {
        let k = self.keys(p.sale_id);
        self.settle
            .key(&k.sale)
            .key(&k.bought)
            .key(&k.decided)
            .key(&k.keys)
            .arg(&p.id)
            .arg(if held { "held" } else { "released" })
            .arg(p.decided_at)
            .arg(p.user_id)
            .arg(p.quantity)
            .arg(p.address_id)
            .arg(&p.idem_key)
            .invoke_async(&mut self.redis.conn())
            .await
    }

    /// Recomputes remaining stock and buyers' counts from the decisions: (stock fixed 0/1, buyer counts fixed).
    pub async fn recount(&self, sale_id: i64) -> redis::RedisResult<(i64, i64)> {
        let k = self.keys(sale_id);
        let reply: Vec<i64> =
            self.recount.key(&k.sale).key(&k.bought).key(&k.decided).invoke_async(&mut self.redis.conn()).await?;
        Ok((reply.first().copied().unwrap_or(0).max(0), reply.get(1).copied().unwrap_or(0)))
    }

    pub(super) async fn remaining(&self, sales: &[SaleRow]) -> redis::RedisResult<Vec<Option<i64>>> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sale in sales {
            pipe.cmd("HGET").arg(self.keys(sale.id).sale).arg("remaining");
        }
        let left: Vec<Option<i64>> = pipe.query_async(&mut self.redis.conn()).await?;
        Ok(left.into_iter().map(|l| l.map(|n| n.max(0))).collect())
    }

    /// One recorded decision.
    pub async fn decided(&self, sale_id: i64, purchase_id: &str) -> redis::RedisResult<Option<Decided>> {
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.keys(sale_id).decided)
            .arg(purchase_id)
            .query_async(&mut self.redis.conn())
            .await?;
        Ok(value.as_deref().and_then(Decided::parse))
    }

    /// Every recorded decision of a sale.
    pub async fn all_decided(&self, sale_id: i64) -> redis::RedisResult<Vec<(String, Decided)>> {
        let all: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys(sale_id).decided).query_async(&mut self.redis.conn()).await?;
        Ok(all.into_iter().filter_map(|(pid, v)| Decided::parse(&v).map(|d| (pid, d))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn decided_records_parse_with_any_key() {
        let d = Decided::parse("7|2|9|held|1700000000000|a|b|c").unwrap();
        assert_eq!((d.user_id, d.quantity, d.address_id), (7, 2, 9));
        assert_eq!((d.state.as_str(), d.decided_at, d.key.as_str()), ("held", 1_700_000_000_000, "a|b|c"));
        assert_eq!(Decided::parse("7|2|9|held"), None);
    }
}
