//! A labelled grid of coloured cells drawn on a canvas: the all-layers grid and the heatmap.
//! Hundreds of tokens × layers or experts are thousands of cells; as DOM elements they took
//! most of a redraw (~250 ms for 233 tokens), on a canvas they take a few milliseconds.

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::CanvasRenderingContext2d;

/// Cell size in CSS pixels.
pub const CELL: f64 = 20.0;
/// Height of the rotated column labels.
pub const HEAD: f64 = 70.0;
/// Width of the row labels.
pub const LEFT: f64 = 34.0;

/// One cell.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Fill colour (CSS).
    pub bg: String,
    /// Text colour (CSS).
    pub fg: &'static str,
    /// Text inside the cell.
    pub text: String,
    /// Outline (chosen), dashed when `dashed` (dropped).
    pub outline: bool,
    /// Dashed outline.
    pub dashed: bool,
}

impl Cell {
    /// A share or probability cell: shaded by `shade` in `[0, 1]`, labelled `value` in percent.
    pub fn percent(shade: f64, value: f64, outline: bool) -> Self {
        let (bg, fg) = super::palette::prob_colours(shade as f32);
        Self { bg, fg, text: format!("{:.0}", 100.0 * value), outline, dashed: false }
    }
}

/// What to draw: row labels (with their colours) and column labels, cells by row.
#[derive(Debug, Clone)]
pub struct CellGrid {
    /// Width of the row labels ([`LEFT`] unless they are long).
    pub left: f64,
    /// `(label, background, text colour)` per row.
    pub rows: Vec<(String, String, &'static str)>,
    /// Label per column.
    pub cols: Vec<String>,
    /// `cells[row][col]`; `None` is an empty cell.
    pub cells: Vec<Vec<Option<Cell>>>,
}

impl CellGrid {
    /// Size in CSS pixels.
    pub fn size(&self) -> (f64, f64) {
        (self.left + CELL * self.cols.len() as f64 + 2.0, HEAD + CELL * self.rows.len() as f64 + 2.0)
    }

    /// `(row, col)` under a point in CSS pixels.
    pub fn hit(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        if x < self.left || y < HEAD {
            return None;
        }
        let (c, r) = (((x - self.left) / CELL) as usize, ((y - HEAD) / CELL) as usize);
        (r < self.rows.len() && c < self.cols.len()).then_some((r, c))
    }

    fn draw(&self, canvas: &web_sys::HtmlCanvasElement) -> Option<()> {
        let ratio = web_sys::window()?.device_pixel_ratio().max(1.0);
        let (w, h) = self.size();
        canvas.set_width((w * ratio) as u32);
        canvas.set_height((h * ratio) as u32);
        let _ = canvas.set_attribute("style", &format!("width:{w}px;height:{h}px"));
        let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        let left = self.left;
        // The theme's colours (style.css): labels, empty cells, outlines.
        let css = |name, fallback| super::theme::css_var(canvas, name, fallback);
        let (muted, empty, ink) = (css("--muted", "#5b6373"), css("--empty", "#f1f2f6"), css("--ink", "#1d2330"));
        ctx.scale(ratio, ratio).ok()?;
        ctx.set_text_align("center");
        ctx.set_text_baseline("middle");
        ctx.set_font("11px ui-monospace, Menlo, monospace");
        for (c, label) in self.cols.iter().enumerate() {
            let short: String = label.chars().take(9).collect();
            ctx.save();
            ctx.translate(left + CELL * (c as f64 + 0.5), HEAD - 4.0).ok()?;
            ctx.rotate(-std::f64::consts::FRAC_PI_2).ok()?;
            ctx.set_text_align("left");
            ctx.set_fill_style_str(&muted);
            ctx.fill_text(&short, 0.0, 0.0).ok()?;
            ctx.restore();
        }
        ctx.set_font("600 11px system-ui, sans-serif");
        for (r, (label, bg, fg)) in self.rows.iter().enumerate() {
            let y = HEAD + CELL * r as f64;
            ctx.set_fill_style_str(bg);
            ctx.fill_rect(2.0, y + 2.0, left - 6.0, CELL - 4.0);
            ctx.set_fill_style_str(fg);
            ctx.fill_text(label, (left - 4.0) / 2.0 + 1.0, y + CELL / 2.0).ok()?;
        }
        ctx.set_font("10px system-ui, sans-serif");
        for (r, row) in self.cells.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let (x, y) = (left + CELL * c as f64, HEAD + CELL * r as f64);
                let Some(cell) = cell else {
                    ctx.set_fill_style_str(&empty);
                    ctx.fill_rect(x + 0.5, y + 0.5, CELL - 1.0, CELL - 1.0);
                    continue;
                };
                ctx.set_fill_style_str(&cell.bg);
                ctx.fill_rect(x + 0.5, y + 0.5, CELL - 1.0, CELL - 1.0);
                if cell.outline {
                    ctx.set_line_width(2.0);
                    ctx.set_stroke_style_str(if cell.dashed { "#a32121" } else { &ink });
                    let dash = if cell.dashed { vec![3.0, 2.0] } else { Vec::new() };
                    let _ =
                        ctx.set_line_dash(&js_sys::Array::from_iter(dash.into_iter().map(wasm_bindgen::JsValue::from)));
                    ctx.stroke_rect(x + 1.5, y + 1.5, CELL - 3.0, CELL - 3.0);
                }
                ctx.set_fill_style_str(cell.fg);
                ctx.fill_text(&cell.text, x + CELL / 2.0, y + CELL / 2.0 + 0.5).ok()?;
            }
        }
        Some(())
    }
}

/// The grid on a canvas; `on_cell(row, col)` when a cell is clicked.
#[component]
pub fn CellCanvas(
    /// What to draw.
    grid: CellGrid,
    /// Click handler.
    on_cell: impl Fn(usize, usize) + 'static,
    /// Accessible description.
    label: String,
    /// Test id.
    testid: &'static str,
) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    // One grid for the draw effect and the click handler (thousands of cells: no copy).
    let grid = std::rc::Rc::new(grid);
    let drawn = grid.clone();
    let theme = use_context::<super::theme::ThemeSignal>();
    Effect::new(move || {
        if let Some(t) = theme {
            t.0.track(); // redraw in the other theme's colours
        }
        if let Some(c) = canvas.get() {
            drawn.draw(&c);
        }
    });
    let rows = grid.rows.len();
    let cols = grid.cols.len();
    // The numbers drawn, row by row (`-` for an empty cell): what a test or a screen reader can read.
    let cells = grid
        .cells
        .iter()
        .map(|r| r.iter().map(|c| c.as_ref().map_or("-", |c| c.text.as_str())).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join(";");
    let png = move |_| {
        if let Some(c) = canvas.get_untracked()
            && let Ok(url) = c.to_data_url()
        {
            let _ = super::export::save_data_url(&url, &format!("switchyard-{testid}.png"));
        }
    };
    view! {
        <div class="canvas-box">
            <button class="small png" data-testid=format!("png-{testid}") title="download this chart as a PNG" on:click=png>"PNG"</button>
            <canvas node_ref=canvas role="img" aria-label=label data-testid=testid data-rows=rows data-cols=cols data-cells=cells
                on:click=move |ev| {
                    if let Some((r, c)) = grid.hit(f64::from(ev.offset_x()), f64::from(ev.offset_y())) {
                        on_cell(r, c);
                    }
                }></canvas>
        </div>
    }
}
