//! The wrk scripts (Lua): one request taken from the environment, and the key flood, one new
//! client address per request; both report as one `BENCH_RESULT` JSON line.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Where the scripts were written.
pub struct Scripts {
    /// One request, from `BENCH_METHOD`, `BENCH_BODY`, `BENCH_CONTENT_TYPE` and `BENCH_TOKEN`.
    pub request: PathBuf,
    /// Anonymous requests from `BENCH_KEYS` client addresses, from `BENCH_FIRST_KEY` on.
    pub key_flood: PathBuf,
}

/// Writes the scripts into `out/scripts`.
pub fn write(out: &Path) -> Result<Scripts> {
    let dir = out.join("scripts");
    std::fs::create_dir_all(&dir)?;
    let report = r#"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local e = summary.errors
  local unexpected = 0
  for _, thread in ipairs(threads) do
    unexpected = unexpected + (thread:get("unexpected") or 0)
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"unexpected":%d}\n',
    summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), unexpected))
end
"#;
    let request = format!(
        r#"-- One request, from BENCH_METHOD, BENCH_BODY, BENCH_CONTENT_TYPE and BENCH_TOKEN.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type then wrk.headers["Content-Type"] = content_type end
local token = os.getenv("BENCH_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end
{report}"#
    );
    let flood = format!(
        r#"-- Anonymous requests, each from the next of BENCH_KEYS client addresses (X-Forwarded-For,
-- trusted from loopback on the measured instance), from BENCH_FIRST_KEY on; the thread stops
-- once the last address is answered.
local keys = tonumber(os.getenv("BENCH_KEYS"))
local first = tonumber(os.getenv("BENCH_FIRST_KEY"))
local sent, answered = 0, 0
function request()
  local i = (first + sent) % keys
  sent = sent + 1
  local address = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  return wrk.format("GET", nil, {{["X-Forwarded-For"] = address}})
end
unexpected = 0
function response(status, headers, body)
  answered = answered + 1
  -- Each must be refused for want of a credential: anything else (a 429 of a bucket shared by
  -- pooled addresses, an error) is counted.
  if status ~= 401 then unexpected = unexpected + 1 end
  if first + answered >= keys then wrk.thread:stop() end
end
{report}"#
    );
    let scripts = Scripts {
        request: dir.join("request.lua"),
        key_flood: dir.join("key-flood.lua"),
    };
    std::fs::write(&scripts.request, request)?;
    std::fs::write(&scripts.key_flood, flood)?;
    Ok(scripts)
}
