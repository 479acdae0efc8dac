//! A labelled grid of coloured cells drawn on a canvas: the all-layers grid and the heatmap.
//! Hundreds of tokens × layers or experts are thousands of cells; as DOM elements they took
//! most of a redraw (~250 ms for 233 tokens), on a canvas they take a few milliseconds.

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::CanvasRenderingContext2d;

use super::table::{TableButton, TablePanel};

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

    /// The cell in words: its number, `unit`, and what its outline means where it has one
    /// ("5% (chosen)", "12% (dropped)"): the outline is not the only way to know.
    fn words(&self, unit: &str, marked: &str) -> String {
        match (self.outline, self.dashed) {
            (_, true) => format!("{}{unit} (dropped)", self.text),
            (true, _) => format!("{}{unit} ({marked})", self.text),
            _ => format!("{}{unit}", self.text),
        }
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

/// Where the keyboard's cell goes on `key`, within `rows` × `cols`; `None` for other keys.
fn step(key: &str, (r, c): (usize, usize), rows: usize, cols: usize) -> Option<(usize, usize)> {
    let last = (rows.saturating_sub(1), cols.saturating_sub(1));
    Some(match key {
        "ArrowRight" => (r, (c + 1).min(last.1)),
        "ArrowLeft" => (r, c.saturating_sub(1)),
        "ArrowDown" => ((r + 1).min(last.0), c),
        "ArrowUp" => (r.saturating_sub(1), c),
        "Home" => (r, 0),
        "End" => (r, last.1),
        "PageDown" => (last.0, c),
        "PageUp" => (0, c),
        _ => return None,
    })
}

impl CellGrid {
    /// One cell in words: "L2, cat: 5" (`unit` after the number, "%" for shares).
    fn describe(&self, (r, c): (usize, usize), unit: &str, marked: &str) -> String {
        let row = self.rows.get(r).map_or("", |x| x.0.as_str());
        let col = self.cols.get(c).map_or("", String::as_str);
        match self.cells.get(r).and_then(|x| x.get(c)) {
            Some(Some(cell)) => format!("{row}, {col}: {}", cell.words(unit, marked)),
            _ => format!("{row}, {col}: empty"),
        }
    }

    /// The numbers drawn, as a table, each cell in [`Cell::words`].
    fn table(&self, corner: &str, unit: &str, marked: &str) -> super::table::TableData {
        let shown = |c: &Option<Cell>| c.as_ref().map_or_else(|| "–".into(), |c| c.words(unit, marked));
        let mut data = super::table::TableData { corner: corner.into(), cols: self.cols.clone(), rows: Vec::new() };
        // Only the cells the table will show are written (a big trace's grid has 196 608).
        let width = data.shown_cols_of(self.rows.len());
        data.rows = self
            .rows
            .iter()
            .zip(&self.cells)
            .map(|(r, cells)| (r.0.clone(), cells.iter().take(width).map(shown).collect()))
            .collect();
        data
    }
}

thread_local! {
    /// The chart (and its cell) Enter was pressed on, for a moment: when the press rebuilds
    /// the view the chart is in (the affinity chart changes the layer), the new chart takes
    /// the focus back instead of leaving it on the page's body.
    static REFOCUS: std::cell::Cell<Option<(&'static str, (usize, usize))>> = const { std::cell::Cell::new(None) };
}

/// Scrolls `el` into view inside its scrolling card, as little as it takes.
fn reveal(el: &web_sys::Element) {
    let options = web_sys::ScrollIntoViewOptions::new();
    options.set_block(web_sys::ScrollLogicalPosition::Nearest);
    options.set_inline(web_sys::ScrollLogicalPosition::Nearest);
    el.scroll_into_view_with_scroll_into_view_options(&options);
}

/// The grid on a canvas; `on_cell((row, col))`, where given, when a cell is clicked or Enter
/// is pressed on it. The canvas takes the focus: the arrow keys (Home, End, Page Up/Down) move
/// a visible ring over the cells and a live region says the cell's row, column and value.
/// Beside it, the same numbers as a table.
#[component]
pub fn CellCanvas(
    /// What to draw.
    grid: CellGrid,
    /// What a click or Enter on a cell does, if anything.
    #[prop(optional)]
    on_cell: Option<Callback<(usize, usize)>>,
    /// Accessible description.
    label: String,
    /// Test id.
    testid: &'static str,
    /// What the rows are, for the table's corner ("layer", "expert", "domain").
    #[prop(optional)]
    corner: &'static str,
    /// Written after each cell's number ("%" for shares and probabilities).
    #[prop(optional)]
    unit: &'static str,
    /// What an outlined cell is ("chosen", "changed"), said in words where the chart outlines it.
    #[prop(default = "outlined")]
    marked: &'static str,
) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let ring = NodeRef::<leptos::html::Div>::new();
    // One grid for the drawing, the handlers and the table (thousands of cells: no copy).
    let grid = std::sync::Arc::new(grid);
    let (rows, cols) = (grid.rows.len(), grid.cols.len());
    // The keyboard's cell, and whether the canvas has the keyboard's focus (the ring shows only then).
    let at = RwSignal::new(None::<(usize, usize)>);
    let focused = RwSignal::new(false);
    let theme = use_context::<super::theme::ThemeSignal>();
    let drawn = grid.clone();
    Effect::new(move || {
        if let Some(t) = theme {
            t.track(); // redraw in the other theme's colours
        }
        if let Some(c) = canvas.get() {
            drawn.draw(&c);
            if let Some((id, cell)) = REFOCUS.get()
                && id == testid
            {
                REFOCUS.set(None);
                at.set(Some((cell.0.min(rows.saturating_sub(1)), cell.1.min(cols.saturating_sub(1)))));
                let _ = c.focus();
            }
        }
    });
    // The numbers drawn, row by row (`-` for an empty cell): what a test can read at once.
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
    let keydown = move |ev: leptos::ev::KeyboardEvent| {
        focused.set(true); // the keyboard is in use: show where it is
        let here = at.get_untracked().unwrap_or((0, 0));
        let key = ev.key();
        if key == "Enter" || key == " " {
            if let Some(on_cell) = on_cell.filter(|_| here.0 < rows && here.1 < cols) {
                ev.prevent_default();
                REFOCUS.set(Some((testid, here)));
                // Only for the rebuild this press causes, never a later one.
                gloo_timers::callback::Timeout::new(500, || REFOCUS.set(None)).forget();
                on_cell.run(here);
            }
            return;
        }
        if let Some(to) = step(&key, here, rows, cols) {
            ev.prevent_default();
            at.set(Some(to));
            // Keep the ring in sight inside the scrolling card (once it has moved).
            request_animation_frame(move || {
                if let Some(r) = ring.get_untracked() {
                    reveal(&r);
                }
            });
        }
    };
    // A click focuses the canvas too; only the keyboard's focus shows the ring (and starts at
    // the first cell).
    let focus = move |_| {
        if canvas.get_untracked().is_some_and(|c| c.matches(":focus-visible").unwrap_or(true)) {
            focused.set(true);
            if at.get_untracked().is_none() {
                at.set(Some((0, 0)));
            }
        }
    };
    let hit_grid = grid.clone();
    let click = move |ev: leptos::ev::MouseEvent| {
        if let Some(cell) = hit_grid.hit(f64::from(ev.offset_x()), f64::from(ev.offset_y())) {
            at.set(Some(cell));
            if let Some(on_cell) = on_cell {
                on_cell.run(cell);
            }
        }
    };
    let ring_grid = grid.clone();
    let ring_style = move || {
        let (r, c) = at.get().unwrap_or((0, 0));
        // A little larger than the cell, so that it reads apart from a chosen cell's outline.
        let (x, y) = (ring_grid.left + CELL * c as f64 - 3.0, HEAD + CELL * r as f64 - 3.0);
        format!("left:{x}px;top:{y}px;width:{}px;height:{}px", CELL + 6.0, CELL + 6.0)
    };
    let said_grid = grid.clone();
    let said = move || at.get().map(|cell| said_grid.describe(cell, unit, marked)).unwrap_or_default();
    let table = Callback::new(move |()| grid.table(corner, unit, marked));
    let open = RwSignal::new(false);
    let keys = if on_cell.is_some() {
        "Arrow keys move between the cells, Enter opens one"
    } else {
        "Arrow keys move between the cells"
    };
    let name = format!("{label}. {keys}; the Table button shows the numbers.");
    // The canvas is a focusable widget that takes the arrow keys: an "application" to a screen
    // reader (whose browse mode would keep the keys), described as a chart.
    view! {
        <div class="canvas-box">
            <div class="chart-buttons">
                <button class="small png" data-testid=format!("png-{testid}") aria-label=format!("PNG of {label}")
                    title="download this chart as a PNG" on:click=png>"PNG"</button>
                <TableButton open=open testid=testid chart=label.clone() />
            </div>
            <div class="canvas-cells">
                <canvas node_ref=canvas role="application" aria-roledescription="chart" tabindex="0" aria-label=name
                    data-testid=testid data-rows=rows data-cols=cols data-cells=cells
                    on:focus=focus on:blur=move |_| focused.set(false) on:keydown=keydown on:click=click></canvas>
                <div node_ref=ring class="cell-ring" aria-hidden="true" hidden=move || !focused.get() style=ring_style></div>
            </div>
            <p class="sr-only" aria-live="polite" data-testid=format!("{testid}-at")>{said}</p>
            <TablePanel open=open caption=Signal::derive(move || label.clone()) testid=testid data=table />
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::step;

    #[test]
    fn the_keyboard_moves_within_the_grid_and_stops_at_its_edges() {
        assert_eq!(step("ArrowRight", (0, 0), 4, 3), Some((0, 1)));
        assert_eq!(step("ArrowRight", (0, 2), 4, 3), Some((0, 2)), "the last column stays");
        assert_eq!(step("ArrowLeft", (2, 0), 4, 3), Some((2, 0)), "the first column stays");
        assert_eq!(step("ArrowDown", (3, 1), 4, 3), Some((3, 1)), "the last row stays");
        assert_eq!(step("ArrowUp", (0, 1), 4, 3), Some((0, 1)));
        assert_eq!(step("ArrowDown", (1, 1), 4, 3), Some((2, 1)));
        assert_eq!(step("Home", (2, 2), 4, 3), Some((2, 0)));
        assert_eq!(step("End", (2, 0), 4, 3), Some((2, 2)));
        assert_eq!(step("PageDown", (0, 1), 4, 3), Some((3, 1)));
        assert_eq!(step("PageUp", (3, 1), 4, 3), Some((0, 1)));
        assert_eq!(step("a", (0, 0), 4, 3), None, "other keys are not the chart's");
        assert_eq!(step("ArrowRight", (0, 0), 0, 0), Some((0, 0)), "an empty grid goes nowhere");
    }
}
