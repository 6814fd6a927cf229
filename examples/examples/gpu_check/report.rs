//! The check's table and its JSON form, and the parity targets it is judged by.

use std::time::{SystemTime, UNIX_EPOCH};

use burn::tensor::FloatDType;
use hd_painter::BackendKind;
use serde_json::{Value, json};

use crate::measure::{Measured, RunPlan, RunTimes};

/// The parity target of a dtype, relative to the largest value of the flex f32 output.
pub fn target(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::F32 => 1e-3,
        _ => 2e-2,
    }
}

/// What one backend and dtype gave.
pub enum Outcome {
    /// Its numbers.
    Measured(Measured),
    /// The device does not compute in the dtype (bf16 on many Vulkan devices).
    Unsupported,
    /// An error or a panic, with its message.
    Failed(String),
}

/// One row of the table.
pub struct Row {
    pub kind: BackendKind,
    pub dtype: FloatDType,
    pub outcome: Outcome,
}

impl Row {
    fn passed(&self) -> bool {
        match &self.outcome {
            Outcome::Measured(m) => {
                m.unet_error <= target(self.dtype) && m.vae_error <= target(self.dtype)
            }
            Outcome::Unsupported => true,
            Outcome::Failed(_) => false,
        }
    }
}

/// The whole runs and where they ran.
pub struct Runs {
    pub kind: BackendKind,
    pub dtype: FloatDType,
    pub plan: RunPlan,
    pub times: Result<RunTimes, String>,
}

/// The check's results.
pub struct Report {
    mode: &'static str,
    latent: usize,
    pub rows: Vec<Row>,
    pub runs: Option<Runs>,
}

fn dtype_name(dtype: FloatDType) -> &'static str {
    match dtype {
        FloatDType::F32 => "f32",
        FloatDType::F16 => "f16",
        FloatDType::BF16 => "bf16",
        _ => "other",
    }
}

/// The process's peak resident memory (GiB), from `/proc/self/status` where there is one.
fn peak_rss_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / f64::from(1u32 << 20))
}

impl Report {
    pub fn new(mode: &'static str, latent: usize) -> Self {
        Self {
            mode,
            latent,
            rows: Vec::new(),
            runs: None,
        }
    }

    /// The backend and dtype with the fastest warm UNet call among those within their parity
    /// target (flex f32 when none is).
    pub fn fastest(&self) -> (BackendKind, FloatDType) {
        self.rows
            .iter()
            .filter(|row| row.passed())
            .filter_map(|row| match &row.outcome {
                Outcome::Measured(m) => Some((m.step_s, row.kind, row.dtype)),
                _ => None,
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or((BackendKind::Flex, FloatDType::F32), |(_, kind, dtype)| {
                (kind, dtype)
            })
    }

    /// Whether every row met its target and the whole runs, if asked for, finished.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(Row::passed)
            && self.runs.as_ref().is_none_or(|runs| runs.times.is_ok())
    }

    /// The table, in Markdown.
    pub fn table(&self) -> String {
        let mut out = format!(
            "gpu_check ({} models, batch-2 UNet call at {l}x{l}, VAE decode of one {l}x{l} latent)\n\n",
            self.mode,
            l = self.latent
        );
        out.push_str(
            "| backend | dtype | UNet error | VAE error | first call (s) | UNet call (s) | VAE decode (s) | device memory (GiB) | result |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for row in &self.rows {
            let (kind, dtype) = (row.kind, dtype_name(row.dtype));
            out.push_str(&match &row.outcome {
                Outcome::Measured(m) => format!(
                    "| {kind} | {dtype} | {:.1e} | {:.1e} | {:.3} | {:.4} | {:.4} | {} | {} |\n",
                    m.unet_error,
                    m.vae_error,
                    m.first_call_s,
                    m.step_s,
                    m.decode_s,
                    m.device_gib.map_or("-".into(), |g| format!("{g:.2}")),
                    if row.passed() { "ok" } else { "PARITY MISSED" },
                ),
                Outcome::Unsupported => {
                    format!("| {kind} | {dtype} | | | | | | | not supported by the device |\n")
                }
                Outcome::Failed(e) => format!("| {kind} | {dtype} | | | | | | | FAILED: {e} |\n"),
            });
        }
        if let Some(runs) = &self.runs {
            let p = &runs.plan;
            out.push_str(&format!(
                "\nwhole runs on {} {}: ",
                runs.kind,
                dtype_name(runs.dtype)
            ));
            out.push_str(&match &runs.times {
                Ok(t) => format!(
                    "first stage (PAIntA + RASG, {} steps, {} px) {:.1} s; SR stage ({} steps to {} px) {:.1} s\n",
                    p.steps, p.size, t.first_stage_s, p.sr_steps, p.sr_long_side, t.sr_s
                ),
                Err(e) => format!("FAILED: {e}\n"),
            });
        }
        if let Some(rss) = peak_rss_gib() {
            out.push_str(&format!("peak RSS of the process: {rss:.2} GiB\n"));
        }
        out
    }

    /// The table as JSON.
    pub fn json(&self) -> String {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut v = json!({
                    "backend": row.kind.to_string(),
                    "dtype": dtype_name(row.dtype),
                    "target": target(row.dtype),
                    "passed": row.passed(),
                });
                match &row.outcome {
                    Outcome::Measured(m) => {
                        v["unet_error"] = json!(m.unet_error);
                        v["vae_error"] = json!(m.vae_error);
                        v["first_call_s"] = json!(m.first_call_s);
                        v["unet_call_s"] = json!(m.step_s);
                        v["vae_decode_s"] = json!(m.decode_s);
                        v["device_memory_gib"] = json!(m.device_gib);
                    }
                    Outcome::Unsupported => v["unsupported"] = json!(true),
                    Outcome::Failed(e) => v["error"] = json!(e),
                }
                v
            })
            .collect();
        let runs = self.runs.as_ref().map(|runs| {
            let p = &runs.plan;
            let mut v = json!({
                "backend": runs.kind.to_string(),
                "dtype": dtype_name(runs.dtype),
                "size": p.size, "steps": p.steps,
                "sr_long_side": p.sr_long_side, "sr_steps": p.sr_steps,
            });
            match &runs.times {
                Ok(t) => {
                    v["first_stage_s"] = json!(t.first_stage_s);
                    v["sr_stage_s"] = json!(t.sr_s);
                }
                Err(e) => v["error"] = json!(e),
            }
            v
        });
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let report = json!({
            "mode": self.mode,
            "latent": self.latent,
            "unix_time": unix,
            "rows": rows,
            "runs": runs,
            "peak_rss_gib": peak_rss_gib(),
            "passed": self.passed(),
        });
        serde_json::to_string_pretty(&report).expect("a JSON value serialises")
    }
}
