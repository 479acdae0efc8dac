//! The Train view's curves, drawn with plotters on canvases: the loss, the load per expert and
//! the router's entropy over the steps. Each draws in the theme's colours (and again when the
//! theme changes), tells its series apart by more than colour (line style, markers, labels on
//! the bands) and has its numbers as a table beside it.

use leptos::html::Canvas;
use leptos::prelude::*;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use switchyard_protocol::training::{HeldOut, TrainPoint};
use switchyard_state::TrainRecipe;
use wasm_bindgen::JsCast;

use super::Ctl;
use super::palette::{expert_bg, expert_fg};
use super::table::{TableButton, TableData, TablePanel};
use super::train::signals;

/// A table row per step is too many for a long run: at most this many, evenly spaced, the
/// last step always among them.
const TABLE_STEPS: usize = 200;

/// The theme's colours as the chart draws them (style.css's custom properties).
#[derive(Clone, Copy)]
struct Ink {
    background: RGBColor,
    text: RGBColor,
    grid: RGBColor,
    /// The first series' colour: Okabe–Ito blue, the lighter sky blue on dark.
    blue: RGBColor,
}

impl Ink {
    fn of(canvas: &web_sys::Element) -> Self {
        let css = |name, fallback| hex(&super::theme::css_var(canvas, name, fallback));
        Self {
            background: css("--card", "#ffffff"),
            text: css("--ink", "#1d2330"),
            grid: css("--line", "#d9dce3"),
            blue: css("--series-blue", "#0072b2"),
        }
    }
}

/// `#RRGGBB` as a plotters colour.
pub(super) fn hex(s: &str) -> RGBColor {
    let v = u32::from_str_radix(s.trim_start_matches('#'), 16).unwrap_or(0x777777);
    RGBColor((v >> 16) as u8, (v >> 8) as u8, v as u8)
}

/// Draws on `canvas` with plotters when `draw` changes what it reads, or the theme changes.
fn plot(canvas: NodeRef<Canvas>, draw: impl Fn(CanvasBackend, Ink) + 'static) {
    let theme = use_context::<super::theme::ThemeSignal>();
    Effect::new(move |_| {
        if let Some(t) = theme {
            t.track();
        }
        let Some(el) = canvas.get() else { return };
        let el: web_sys::HtmlCanvasElement = el.unchecked_into();
        let ink = Ink::of(&el);
        if let Some(backend) = CanvasBackend::with_canvas_object(el) {
            draw(backend, ink);
        }
    });
}

/// A chart over the steps: the canvas cleared, `caption`, axes from 0 to the last point's step
/// and from 0 to `top`.
type StepChart<'a> = ChartContext<'a, CanvasBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn step_chart<'a>(
    root: &'a DrawingArea<CanvasBackend, plotters::coord::Shift>,
    ink: Ink,
    caption: &str,
    points: &[TrainPoint],
    top: f64,
) -> Option<StepChart<'a>> {
    let steps = points.last().map_or(1, |p| p.step).max(1) as f64;
    let _ = root.fill(&ink.background);
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(36)
        .caption(caption, ("sans-serif", 13).into_font().color(&ink.text))
        .build_cartesian_2d(0.0..steps, 0.0..top)
        .ok()?;
    let _ = chart
        .configure_mesh()
        .x_desc("step")
        .axis_style(ink.text)
        .bold_line_style(ink.grid)
        .light_line_style(ink.grid.mix(0.4))
        .label_style(("sans-serif", 11).into_font().color(&ink.text))
        .axis_desc_style(("sans-serif", 11).into_font().color(&ink.text))
        .draw();
    Some(chart)
}

/// The steps a table shows: at most [`TABLE_STEPS`], evenly spaced, ending at the last.
fn table_steps(points: &[TrainPoint]) -> Vec<&TrainPoint> {
    let every = points.len().div_ceil(TABLE_STEPS).max(1);
    let mut rows: Vec<&TrainPoint> = points.iter().step_by(every).collect();
    if let Some(last) = points.last()
        && rows.last().is_none_or(|r| r.step != last.step)
    {
        rows.push(last);
    }
    rows
}

/// The loss chart's drawing: training loss as a solid line, the held-out loss as a thicker
/// line with dots.
fn draw_loss(backend: CanvasBackend, ink: Ink, points: &[TrainPoint], held: &[HeldOut]) {
    let root = backend.into_drawing_area();
    let top = points.iter().map(|p| f64::from(p.ce)).fold(1.0, f64::max).min(8.0) * 1.05;
    let Some(mut chart) = step_chart(&root, ink, "loss (nats per byte)", points, top) else { return };
    let train = points.iter().map(|p| (p.step as f64, f64::from(p.ce).min(top)));
    let _ = chart.draw_series(LineSeries::new(train, &ink.blue));
    let orange = RGBColor(213, 94, 0);
    let held_line = held.iter().map(|h| (h.step as f64, h.ce.min(top)));
    let _ = chart.draw_series(LineSeries::new(held_line.clone(), orange.stroke_width(2)));
    let _ = chart.draw_series(held_line.map(|p| Circle::new(p, 3, orange.filled())));
    let _ = root.present();
}

fn loss_table(points: &[TrainPoint], held: &[HeldOut]) -> TableData {
    let held_at = |step| held.iter().find(|h| h.step == step).map_or(String::new(), |h| format!("{:.4}", h.ce));
    let mut steps: Vec<u64> = table_steps(points).iter().map(|p| p.step).collect();
    steps.extend(held.iter().map(|h| h.step)); // every held-out measurement has its row
    steps.sort_unstable();
    steps.dedup();
    let ce_at = |step| points.iter().find(|p| p.step == step).map_or(String::new(), |p| format!("{:.4}", p.ce));
    TableData {
        corner: "step".into(),
        cols: vec!["training loss (nats/byte)".into(), "held-out loss (nats/byte)".into()],
        rows: steps.into_iter().map(|s| (s.to_string(), vec![ce_at(s), held_at(s)])).collect(),
    }
}

/// Training cross-entropy per step and the held-out loss (nats per byte).
#[component]
pub(super) fn LossChart() -> impl IntoView {
    let s = signals();
    let canvas = NodeRef::<Canvas>::new();
    plot(canvas, move |backend, ink| {
        s.points.with(|points| s.held.with(|held| draw_loss(backend, ink, points, held)));
    });
    let last_ce = move || s.points.with(|p| p.last().map(|p| p.ce));
    // Means of the first and last ten steps: the test reads whether the loss fell.
    let mean_ce = |p: &[TrainPoint]| (!p.is_empty()).then(|| p.iter().map(|x| x.ce).sum::<f32>() / p.len() as f32);
    let first_ce = move || s.points.with(|p| mean_ce(&p[..p.len().min(10)]));
    let recent_ce = move || s.points.with(|p| mean_ce(&p[p.len().saturating_sub(10)..]));
    // The first steps' losses, exactly: two runs of one link must give the same curve.
    let curve =
        move || s.points.with(|p| p.iter().take(40).map(|x| format!("{:.5}", x.ce)).collect::<Vec<_>>().join(","));
    let held_ce = move || s.held.with(|h| h.last().map(|h| h.ce));
    let label = Signal::derive(move || match (last_ce(), held_ce()) {
        (Some(ce), Some(h)) => format!("Loss over the steps: training loss {ce:.3} nats per byte now, held-out {h:.3}"),
        (Some(ce), None) => format!("Loss over the steps: training loss {ce:.3} nats per byte now"),
        _ => "Loss over the steps (no step yet)".to_string(),
    });
    let table = Callback::new(move |()| s.points.with(|p| s.held.with(|h| loss_table(p, h))));
    let open = RwSignal::new(false);
    view! {
        <div class="train-chart">
            <div class="chart-buttons"><TableButton open=open testid="train-loss" chart="the loss over the steps".to_string() /></div>
            <canvas node_ref=canvas width="420" height="220" role="img" aria-label=label data-testid="train-loss"
                data-ce=move || last_ce().map(|v| format!("{v:.4}")) data-held=move || held_ce().map(|v| format!("{v:.4}"))
                data-first-ce=move || first_ce().map(|v| format!("{v:.4}")) data-recent-ce=move || recent_ce().map(|v| format!("{v:.4}"))
                data-curve=curve></canvas>
            <TablePanel open=open caption=label testid="train-loss" data=table />
            <p class="hint">"thin blue line: the training loss of each step; thick orange line with dots: the held-out slices (the last ~5 % of each sample)"</p>
        </div>
    }
}

/// The load chart's drawing: one band per expert, stacked, each named where it is tall enough.
fn draw_load(backend: CanvasBackend, ink: Ink, points: &[TrainPoint], layer: usize) {
    let root = backend.into_drawing_area();
    let e = points.last().and_then(|p| p.load.get(layer)).map_or(0, Vec::len);
    let caption = format!("load per expert at layer {layer} (stacked share of slots)");
    let Some(mut chart) = step_chart(&root, ink, &caption, points, 1.0) else { return };
    let share = |p: &TrainPoint, j: usize| p.load.get(layer).and_then(|l| l.get(j)).copied().map_or(0.0, f64::from);
    for j in (0..e).rev() {
        // Band j's top: the sum of experts 0..=j.
        let top = points.iter().map(|p| (p.step as f64, (0..=j).map(|i| share(p, i)).sum::<f64>()));
        let colour = hex(expert_bg(j));
        let _ = chart.draw_series(AreaSeries::new(top, 0.0, colour.mix(0.85)).border_style(colour));
    }
    // The expert's name in its band at the last step (the colour is not the only key), left
    // of the right edge.
    if let Some(last) = points.last() {
        let mut below = 0.0;
        for j in 0..e {
            let s = share(last, j);
            let mid = below + s / 2.0;
            below += s;
            if s > 0.06 {
                let font = ("sans-serif", 11).into_font().color(&hex(expert_fg(j)));
                let name = EmptyElement::at((last.step as f64, mid)) + Text::new(format!("E{j}"), (-22, -6), font);
                let _ = chart.plotting_area().draw(&name);
            }
        }
    }
    let _ = root.present();
}

fn load_table(points: &[TrainPoint], layer: usize) -> TableData {
    let e = points.last().and_then(|p| p.load.get(layer)).map_or(0, Vec::len);
    let cell = |p: &TrainPoint, j| {
        p.load.get(layer).and_then(|l| l.get(j)).map_or(String::new(), |v| format!("{:.1}%", 100.0 * v))
    };
    TableData {
        corner: "step".into(),
        cols: (0..e).map(|j| format!("E{j}")).collect(),
        rows: table_steps(points)
            .into_iter()
            .map(|p| (p.step.to_string(), (0..e).map(|j| cell(p, j)).collect()))
            .collect(),
    }
}

/// Each expert's share of the slots over the steps at the selected layer (stacked), with the
/// LBL value: collapse shows as one band taking the height.
#[component]
pub(super) fn LoadChart() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let s = signals();
    let canvas = NodeRef::<Canvas>::new();
    // The playground's layer, within the trained model's layers.
    let layer = move || ctl.layer.get().min(ctl.state.with(|st| st.train.layers).saturating_sub(1));
    plot(canvas, move |backend, ink| {
        let layer = layer();
        s.points.with(|points| draw_load(backend, ink, points, layer));
    });
    let max_share = move || {
        let l = layer();
        s.points.with(|p| p.last().and_then(|p| p.load.get(l)).map(|v| v.iter().copied().fold(0.0f32, f32::max)))
    };
    let lbl = move || s.points.with(|p| p.last().map(|p| p.lbl));
    let label = Signal::derive(move || match max_share() {
        Some(m) => format!(
            "Load per expert at layer {} over the steps, stacked: the busiest expert takes {:.0}% of the slots now",
            layer(),
            100.0 * m
        ),
        None => format!("Load per expert at layer {} over the steps (no step yet)", layer()),
    });
    let table = Callback::new(move |()| s.points.with(|p| load_table(p, layer())));
    let open = RwSignal::new(false);
    view! {
        <div class="train-chart">
            <div class="chart-buttons"><TableButton open=open testid="train-load" chart="the load per expert over the steps".to_string() /></div>
            <canvas node_ref=canvas width="420" height="220" role="img" aria-label=label data-testid="train-load"
                data-max-share=move || max_share().map(|v| format!("{v:.4}"))></canvas>
            <TablePanel open=open caption=label testid="train-load" data=table />
            <p class="hint">{move || match lbl() {
                Some(v) => format!("LBL {v:.3} now (before its coefficient; top-k gives k under perfect balance, more as the load collapses). One band per expert in its colour, named at the right end. Pick the layer above."),
                None => "One band per expert, in the expert's colour, named at the right end.".to_string(),
            }}</p>
        </div>
    }
}

/// The router chart's drawing: entropy solid, confidence dashed, experts per token dotted.
fn draw_router(backend: CanvasBackend, ink: Ink, points: &[TrainPoint], e: f64) {
    let root = backend.into_drawing_area();
    let top = e.ln() * 1.05;
    let caption = format!("router entropy (nats; uniform over {e} experts: {:.2})", e.ln());
    let Some(mut chart) = step_chart(&root, ink, &caption, points, top) else { return };
    let line = points.iter().map(|p| (p.step as f64, f64::from(p.entropy).min(top)));
    let _ = chart.draw_series(LineSeries::new(line, RGBColor(0, 158, 115).stroke_width(2)));
    // Confidence (mean top-1 probability, 0..1) on the same axis scaled to its top.
    let conf = points.iter().map(|p| (p.step as f64, f64::from(p.confidence) * top));
    let _ = chart.draw_series(DashedLineSeries::new(conf, 6, 4, ink.blue.stroke_width(2)));
    // k per step, scaled so that k = E sits at the top.
    let k = points.iter().map(|p| (p.step as f64, p.k as f64 / e * top));
    let pink = RGBColor(204, 121, 167);
    let _ = chart.draw_series(DottedLineSeries::new(k, 0, 7, move |c| Circle::new(c, 2, pink.filled())));
    let _ = root.present();
}

fn router_table(points: &[TrainPoint]) -> TableData {
    TableData {
        corner: "step".into(),
        cols: vec![
            "router entropy (nats)".into(),
            "confidence (mean top-1 probability)".into(),
            "experts per token".into(),
        ],
        rows: table_steps(points)
            .into_iter()
            .map(|p| {
                (p.step.to_string(), vec![format!("{:.4}", p.entropy), format!("{:.3}", p.confidence), p.k.to_string()])
            })
            .collect(),
    }
}

/// The router's mean entropy over the steps (nats; log E is a uniform router), with the
/// experts per token each step used (SMoE-Dropout's k rises).
#[component]
pub(super) fn RouterChart() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let s = signals();
    let canvas = NodeRef::<Canvas>::new();
    plot(canvas, move |backend, ink| {
        let e = ctl.state.with_untracked(|st| st.train.experts).max(2) as f64;
        s.points.with(|points| draw_router(backend, ink, points, e));
    });
    let now = move || s.points.with(|p| p.last().map(|p| (p.entropy, p.k)));
    let confidence = move || s.points.with(|p| p.last().map(|p| p.confidence));
    let label = Signal::derive(move || match (now(), confidence()) {
        (Some((h, k)), Some(c)) => {
            format!("Router over the steps: mean entropy {h:.3} nats, confidence {c:.2}, {k} experts per token now")
        }
        _ => "Router entropy, confidence and experts per token over the steps (no step yet)".to_string(),
    });
    let table = Callback::new(move |()| s.points.with(|p| router_table(p)));
    let open = RwSignal::new(false);
    view! {
        <div class="train-chart">
            <div class="chart-buttons"><TableButton open=open testid="train-router" chart="the router over the steps".to_string() /></div>
            <canvas node_ref=canvas width="420" height="220" role="img" aria-label=label data-testid="train-router"
                data-entropy=move || now().map(|(h, _)| format!("{h:.4}")) data-k=move || now().map(|(_, k)| k)
                data-confidence=move || confidence().map(|c| format!("{c:.4}"))></canvas>
            <TablePanel open=open caption=label testid="train-router" data=table />
            <p class="hint">{move || match (now(), ctl.state.with(|st| st.train.recipe)) {
                (Some((_, k)), TrainRecipe::SmoeDropout | TrainRecipe::Thor) => format!("This recipe has no learned gate, so no router entropy is measured (the line stays at 0); pink dots: experts per token, {k} now (k = E at the top)."),
                (Some((h, k)), _) => format!("solid green: the router's mean entropy, {h:.3} nats now (it falls as the router grows confident); dashed blue: its confidence, the mean top-1 probability, {:.2} now (1 at the top); pink dots: experts per token, {k} now (k = E at the top).", confidence().unwrap_or(0.0)),
                (None, _) => "solid green: the router's mean entropy; dashed blue: its confidence; pink dots: experts per token.".to_string(),
            }}</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64) -> TrainPoint {
        TrainPoint { step, ce: 1.0, lbl: 2.0, entropy: 0.5, confidence: 0.5, k: 2, load: vec![vec![0.25; 4]] }
    }

    #[test]
    fn a_long_run_tables_at_most_its_budget_of_steps_and_always_the_last() {
        let points: Vec<TrainPoint> = (1..=1001).map(point).collect();
        let rows = table_steps(&points);
        assert!(rows.len() <= TABLE_STEPS + 1, "{} rows", rows.len());
        assert_eq!(rows.first().map(|p| p.step), Some(1));
        assert_eq!(rows.last().map(|p| p.step), Some(1001));
        let short: Vec<TrainPoint> = (1..=5).map(point).collect();
        assert_eq!(table_steps(&short).len(), 5);
    }

    #[test]
    fn the_loss_table_has_a_row_for_every_held_out_measurement() {
        let points: Vec<TrainPoint> = (1..=1000).map(point).collect();
        let held = vec![HeldOut { step: 333, ce: 1.5, domains: Vec::new(), share: Vec::new() }];
        let t = loss_table(&points, &held);
        let row = t.rows.iter().find(|r| r.0 == "333").expect("the held-out step's row");
        assert_eq!(row.1, vec!["1.0000".to_string(), "1.5000".to_string()]);
    }
}
