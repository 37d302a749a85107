//! What a benchmark run produces: the JSON result file (every point, the
//! machine, the command), the markdown table of BENCHMARKS.md and the SVG
//! plot (latency against throughput, one line per system and batching).

use super::load::{Load, Measured};
use super::target::Workload;
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One measured point.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// `qlock` or `etcd`.
    pub system: String,
    /// Replicas or members.
    pub nodes: usize,
    /// The workload.
    pub workload: Workload,
    /// Ops per request asked for.
    pub ops_per_request: usize,
    /// How load was offered.
    pub load: Load,
    /// What was measured.
    pub measured: Measured,
    /// What the servers spent (QLOCK only), warm-up included.
    pub server: Option<ServerCost>,
}

/// What the servers spent on one point, from their own counters: replica
/// 0's executed batches and requests, and the CPU time of every replica.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerCost {
    /// Requests per executed batch (what the per-batch costs are shared
    /// by).
    pub requests_per_batch: f64,
    /// CPU time of all replicas together per executed request, µs.
    pub cpu_micros_per_request: f64,
}

impl Point {
    /// `qlock-4`, `etcd-3`.
    pub fn system_label(&self) -> String {
        format!("{}-{}", self.system, self.nodes)
    }

    /// The series the point belongs to: system and batching.
    pub fn series(&self) -> String {
        format!("{} k={}", self.system_label(), self.ops_per_request)
    }
}

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Memory, GiB (`/proc/meminfo`).
    pub memory_gib: f64,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads what Linux tells about this machine (blank where it does not).
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("")
            .trim()
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// The JSON result file.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The format's version.
    pub format: u32,
    /// The command line.
    pub command: String,
    /// When the run started, seconds since the epoch.
    pub started_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// Seconds measured per point, and the warm-up before each.
    pub seconds_per_point: f64,
    /// The warm-up before each point, seconds.
    pub warmup_seconds: f64,
    /// Every point, in the order run.
    pub points: Vec<Point>,
}

/// The best closed-loop point (most ops/s) of a series.
fn peak<'a>(points: impl Iterator<Item = &'a Point>) -> Option<&'a Point> {
    points
        .filter(|p| matches!(p.load, Load::Closed { .. }))
        .max_by(|a, b| a.measured.ops_per_sec.total_cmp(&b.measured.ops_per_sec))
}

/// The closed-loop point with one client (light load), if run.
fn light<'a>(points: impl Iterator<Item = &'a Point>) -> Option<&'a Point> {
    points
        .filter(|p| matches!(p.load, Load::Closed { clients: 1 }))
        .min_by(|a, b| a.measured.ops_per_sec.total_cmp(&b.measured.ops_per_sec))
}

/// Points grouped by (workload, k, system label), in a stable order.
fn groups(points: &[Point]) -> BTreeMap<(Workload, usize, String), Vec<&Point>> {
    let mut g: BTreeMap<(Workload, usize, String), Vec<&Point>> = BTreeMap::new();
    for p in points {
        g.entry((p.workload, p.ops_per_request, p.system_label()))
            .or_default()
            .push(p);
    }
    g
}

/// The markdown table: per workload and batching, each system's peak
/// (closed loop) and its light-load median.
pub fn table(points: &[Point]) -> String {
    let mut out = String::from(
        "| workload | ops/req | system | clients at peak | ops/s | requests/s | p50 ms | p99 ms | p50 ms, 1 client | errors |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((workload, k, system), series) in groups(points) {
        let Some(p) = peak(series.iter().copied()) else {
            continue;
        };
        let light_p50 = light(series.iter().copied()).map_or("—".to_string(), |l| {
            format!("{:.2}", l.measured.latency.p50_ms)
        });
        let m = &p.measured;
        out.push_str(&format!(
            "| {workload} | {k} | {system} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {light_p50} | {} |\n",
            p.load.clients(),
            m.ops_per_sec,
            m.requests_per_sec,
            m.latency.p50_ms,
            m.latency.p99_ms,
            m.errors
        ));
    }
    out
}

/// Every point as one line of text (the run's log).
pub fn point_line(p: &Point) -> String {
    let m = &p.measured;
    let load = match p.load {
        Load::Closed { clients } => format!("closed c={clients}"),
        Load::Open { rate, clients } => format!("open {rate:.0} units/s (≤{clients})"),
    };
    let server = match p.server {
        Some(s) => format!(
            "  {:.1} req/batch {:.0} µs CPU/req",
            s.requests_per_batch, s.cpu_micros_per_request
        ),
        None => String::new(),
    };
    format!(
        "{:<10} {:<9} k={:<2} {:<26} {:>8.0} ops/s {:>8.0} req/s  p50 {:>7.2}  p90 {:>7.2}  p99 {:>7.2}  p99.9 {:>7.2} ms  refused {} errors {} missed {}{server}",
        p.system_label(),
        p.workload.to_string(),
        p.ops_per_request,
        load,
        m.ops_per_sec,
        m.requests_per_sec,
        m.latency.p50_ms,
        m.latency.p90_ms,
        m.latency.p99_ms,
        m.latency.p999_ms,
        m.refused_ops,
        m.errors,
        m.missed_units
    )
}

/// Colours of the series, in order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Writes the SVG: one panel per workload, x = committed ops/s, y = request
/// latency (ms, log scale); per series a solid p50 line and a dashed p99
/// line through the closed-loop points (by concurrency), open-loop points
/// as triangles (p50).
pub fn plot(points: &[Point], path: &Path) -> Result<(), String> {
    let workloads: Vec<Workload> = {
        let mut w: Vec<Workload> = points.iter().map(|p| p.workload).collect();
        w.sort();
        w.dedup();
        w
    };
    if workloads.is_empty() {
        return Err("no points to plot".into());
    }
    let series_names: Vec<String> = {
        let mut s: Vec<String> = points.iter().map(Point::series).collect();
        s.sort();
        s.dedup();
        s
    };
    let colour = |series: &str| {
        let i = series_names.iter().position(|s| s == series).unwrap_or(0);
        COLOURS[i % COLOURS.len()]
    };
    let cols = workloads.len().min(2);
    let rows = workloads.len().div_ceil(cols);
    let root = SVGBackend::new(path, (640 * cols as u32, 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((rows, cols));
    for (panel, workload) in panels.iter().zip(&workloads) {
        let mine: Vec<&Point> = points.iter().filter(|p| p.workload == *workload).collect();
        let x_max = mine
            .iter()
            .map(|p| p.measured.ops_per_sec)
            .fold(1.0f64, f64::max)
            * 1.1;
        let lat = |p: &&Point| [p.measured.latency.p50_ms, p.measured.latency.p99_ms];
        let y_min = mine
            .iter()
            .flat_map(lat)
            .filter(|v| *v > 0.0)
            .fold(f64::MAX, f64::min)
            .min(1.0)
            * 0.8;
        let y_max = mine.iter().flat_map(lat).fold(1.0f64, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{workload}: request latency against throughput"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("committed ops/s")
            .y_desc("latency, ms (solid p50, dashed p99)")
            .draw()
            .map_err(|e| e.to_string())?;
        let mut names: Vec<String> = mine.iter().map(|p| p.series()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let c = colour(&name);
            let mut closed: Vec<&&Point> = mine
                .iter()
                .filter(|p| p.series() == name && matches!(p.load, Load::Closed { .. }))
                .collect();
            closed.sort_by_key(|p| p.load.clients());
            let p50: Vec<(f64, f64)> = closed
                .iter()
                .map(|p| (p.measured.ops_per_sec, p.measured.latency.p50_ms.max(y_min)))
                .collect();
            let p99: Vec<(f64, f64)> = closed
                .iter()
                .map(|p| (p.measured.ops_per_sec, p.measured.latency.p99_ms.max(y_min)))
                .collect();
            chart
                .draw_series(LineSeries::new(p50.clone(), c.stroke_width(2)).point_size(3))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(DashedLineSeries::new(p99, 6, 4, c.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            let open = mine
                .iter()
                .filter(|p| p.series() == name && matches!(p.load, Load::Open { .. }))
                .map(|p| {
                    TriangleMarker::new(
                        (p.measured.ops_per_sec, p.measured.latency.p50_ms.max(y_min)),
                        5,
                        c.filled(),
                    )
                });
            chart.draw_series(open).map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
