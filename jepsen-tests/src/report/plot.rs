//! The two SVG plots, fault windows shaded and labelled: send latency over time (ok,
//! info and fail marked differently, log scale) and acknowledgements per second.
//! plotters' SVG backend writes `<text>` elements and, without its `ttf` feature, only
//! estimates text sizes, so no system fonts or fontconfig are needed.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::checker::{FaultWindow, Results};
use crate::history::{Event, EventType, Op};

const SIZE: (u32, u32) = (1200, 500);

/// Fill colours for fault windows, one per distinct fault name (cycled).
const SHADES: [RGBColor; 5] = [
    RGBColor(230, 80, 60),
    RGBColor(60, 120, 230),
    RGBColor(240, 170, 30),
    RGBColor(140, 70, 200),
    RGBColor(40, 170, 110),
];

/// One completed send: when it was invoked, how long it took, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    pub t_s: f64,
    pub latency_ms: f64,
    pub kind: EventType,
}

/// Pairs every send completion with its invoke by op id.
pub(super) fn samples(events: &[Event]) -> Vec<Sample> {
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        if !matches!(e.op, Op::Send { .. }) || e.op_id == 0 {
            continue;
        }
        if e.kind == EventType::Invoke {
            invoked.insert(e.op_id, e.t_ns);
        } else if let Some(t0) = invoked.remove(&e.op_id) {
            out.push(Sample {
                t_s: t0 as f64 / 1e9,
                latency_ms: e.t_ns.saturating_sub(t0) as f64 / 1e6,
                kind: e.kind,
            });
        }
    }
    out
}

/// Acknowledgements per whole second of the run, every second from 0 to the last.
pub(super) fn acks_per_second(events: &[Event]) -> Vec<(f64, u64)> {
    let mut per: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        if e.kind == EventType::Ok && matches!(e.op, Op::Send { .. }) {
            *per.entry(e.t_ns / 1_000_000_000).or_default() += 1;
        }
    }
    let last = per.keys().next_back().copied().unwrap_or(0);
    (0..=last)
        .map(|s| (s as f64, per.get(&s).copied().unwrap_or(0)))
        .collect()
}

/// The x range: the whole run and every fault window, at least one second.
fn x_max(events: &[Event], results: &Results) -> f64 {
    let end = events.iter().map(|e| e.t_ns).max().unwrap_or(0) as f64 / 1e9;
    let windows = results.availability.windows.iter().map(|w| w.end_s);
    windows.fold(end, f64::max).max(1.0)
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("cannot draw {}: {e}", path.display())
}

/// Shades each fault window over `y_lo..y_hi` and labels it with the fault name.
fn shade<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    windows: &[FaultWindow],
    y_lo: f64,
    y_hi: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let mut names: Vec<&str> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let n = names.iter().position(|x| *x == w.fault).unwrap_or_else(|| {
            names.push(&w.fault);
            names.len() - 1
        });
        let colour = SHADES[n % SHADES.len()];
        chart.draw_series(std::iter::once(Rectangle::new(
            [(w.start_s, y_lo), (w.end_s.max(w.start_s), y_hi)],
            colour.mix(0.15).filled(),
        )))?;
        let label = EmptyElement::at((w.start_s, y_hi))
            + Text::new(
                w.fault.clone(),
                (3, 3 + 14 * (i as i32 % 4)),
                ("sans-serif", 13).into_font().color(&colour),
            );
        chart.draw_series(std::iter::once(label))?;
    }
    Ok(())
}

/// `latency.svg`: latency of each send at its invoke time.
pub(super) fn latency(path: &Path, events: &[Event], results: &Results) -> anyhow::Result<()> {
    let samples = samples(events);
    let lo = samples
        .iter()
        .map(|s| s.latency_ms)
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let hi = samples.iter().map(|s| s.latency_ms).fold(0.0, f64::max);
    let (lo, hi) = if samples.is_empty() {
        (0.1, 1000.0)
    } else {
        (lo * 0.8, (hi * 1.5).max(lo * 10.0))
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_latency(&root, &samples, results, x_max(events, results), lo, hi).map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    results: &Results,
    x_max: f64,
    lo: f64,
    hi: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "send latency (ms, log scale) by invoke time",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()?;
    shade(&mut chart, &results.availability.windows, lo, hi)?;
    let of = |k: EventType| samples.iter().filter(move |s| s.kind == k);
    chart
        .draw_series(
            of(EventType::Ok).map(|s| Circle::new((s.t_s, s.latency_ms), 2, BLUE.filled())),
        )?
        .label("ok")
        .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
    chart
        .draw_series(of(EventType::Info).map(|s| Cross::new((s.t_s, s.latency_ms), 4, RED)))?
        .label("info (indeterminate)")
        .legend(|(x, y)| Cross::new((x, y), 4, RED));
    let orange = RGBColor(230, 130, 0);
    chart
        .draw_series(
            of(EventType::Fail).map(move |s| TriangleMarker::new((s.t_s, s.latency_ms), 4, orange)),
        )?
        .label("fail")
        .legend(move |(x, y)| TriangleMarker::new((x, y), 4, orange));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// `throughput.svg`: send acknowledgements per second.
pub(super) fn throughput(path: &Path, events: &[Event], results: &Results) -> anyhow::Result<()> {
    let per = acks_per_second(events);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    draw_throughput(&root, &per, results, x_max(events, results)).map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    per: &[(f64, u64)],
    results: &Results,
    x_max: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let top = per.iter().map(|(_, n)| *n).max().unwrap_or(0) as f64 * 1.15 + 1.0;
    let mut chart = ChartBuilder::on(root)
        .caption("send acknowledgements per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("acks/s")
        .draw()?;
    shade(&mut chart, &results.availability.windows, 0.0, top)?;
    chart.draw_series(LineSeries::new(
        per.iter().map(|(s, n)| (*s + 0.5, *n as f64)),
        BLUE.stroke_width(2),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    fn send(t_ms: u64, kind: EventType, op_id: u64) -> Event {
        Event {
            t_ns: t_ms * 1_000_000,
            process: 1,
            kind,
            op_id,
            op: Op::Send {
                value: format!("v{op_id}"),
                key: None,
                seq: None,
                pos: None,
                error: None,
            },
        }
    }

    #[test]
    fn samples_pair_invokes_and_completions() {
        let events = [
            send(1_000, EventType::Invoke, 1),
            send(1_500, EventType::Invoke, 2),
            send(1_010, EventType::Ok, 1),
            send(3_500, EventType::Info, 2),
            send(4_000, EventType::Invoke, 3),
        ];
        let s = samples(&events);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].t_s, s[0].latency_ms, s[0].kind),
            (1.0, 10.0, EventType::Ok)
        );
        assert_eq!((s[1].latency_ms, s[1].kind), (2000.0, EventType::Info));
        assert_eq!(acks_per_second(&events), [(0.0, 0), (1.0, 1)]);
    }
}
