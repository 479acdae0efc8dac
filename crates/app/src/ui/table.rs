//! The table behind a chart: the same numbers as a chart draws, as rows and columns a screen
//! reader can walk (and anyone can read or copy), behind a "Table" button beside the chart.
//! It is built only when opened: the all-layers grid of a big trace is 48 × 4096 cells.

use leptos::prelude::*;

/// At most this many cells are put in the page at once; a larger chart's table shows its first
/// columns and says how many it left out.
pub const MAX_CELLS: usize = 20_000;

/// A chart's numbers: a header per column, a header and the cells per row.
#[derive(Debug, Clone, Default)]
pub struct TableData {
    /// What the row headers are (the top-left header cell), e.g. "layer".
    pub corner: String,
    /// Column headers.
    pub cols: Vec<String>,
    /// `(row header, cells)`; a row's cells are as many as the columns.
    pub rows: Vec<(String, Vec<String>)>,
}

impl TableData {
    /// How many of the columns the table shows: as many as fit in [`MAX_CELLS`] (but at least
    /// one, while there is one).
    pub fn shown_cols(&self) -> usize {
        self.shown_cols_of(self.rows.len())
    }

    /// [`Self::shown_cols`] for `rows` rows (before they are written).
    pub fn shown_cols_of(&self, rows: usize) -> usize {
        (MAX_CELLS / rows.max(1)).max(1).min(self.cols.len())
    }
}

/// The "Table" toggle beside a chart's other buttons; `open` is shared with its [`TablePanel`].
#[component]
pub fn TableButton(
    /// Whether the table shows.
    open: RwSignal<bool>,
    /// Test id of the chart; the button is `table-{testid}`.
    testid: &'static str,
    /// The chart's name: the button says "Table of" it to a screen reader (its visible words
    /// first, as WCAG's label-in-name asks).
    chart: String,
) -> impl IntoView {
    let verb = move || if open.get() { "Hide table" } else { "Table" };
    view! {
        <button class="small table-toggle" data-testid=format!("table-{testid}") aria-expanded=move || open.get().to_string()
            aria-controls=format!("{testid}-table") title="show the chart's numbers as a table"
            aria-label=move || format!("{} of {chart}", verb())
            on:click=move |_| open.update(|o| *o = !*o)>{verb}</button>
    }
}

/// Under the chart, when `open`: the table of what `data` returns when it opens. It is not
/// rebuilt while open (a screen reader's place in it would be lost at every training step);
/// closing and opening it again shows the latest numbers.
#[component]
pub fn TablePanel(
    /// Whether the table shows.
    open: RwSignal<bool>,
    /// The chart's accessible name: the table's caption.
    caption: Signal<String>,
    /// Test id of the chart; the table's box is `{testid}-table`.
    testid: &'static str,
    /// The numbers.
    data: Callback<(), TableData>,
) -> impl IntoView {
    view! {
        <div id=format!("{testid}-table") class="chart-table scroll" data-testid=format!("{testid}-table") hidden=move || !open.get()
            role="region" tabindex="0" aria-label=move || format!("Table of {}", caption.get())>
            {move || open.get().then(|| untrack(|| table(caption.get(), data.run(()))))}
        </div>
    }
}

fn table(caption: String, data: TableData) -> impl IntoView {
    let shown = data.shown_cols();
    let left_out = data.cols.len() - shown;
    let note = (left_out > 0).then(|| {
        format!(" (the first {shown} of {} columns; the chart and the trace download have all)", data.cols.len())
    });
    view! {
        <table class="metrics">
            <caption>{caption}{note}</caption>
            <thead><tr>
                <th scope="col">{data.corner}</th>
                {data.cols.into_iter().take(shown).map(|c| view! { <th scope="col">{c}</th> }).collect_view()}
            </tr></thead>
            <tbody>
                {data.rows.into_iter().map(|(head, cells)| view! {
                    <tr><th scope="row">{head}</th>{cells.into_iter().take(shown).map(|c| view! { <td>{c}</td> }).collect_view()}</tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_table_keeps_its_first_columns_within_the_cell_budget() {
        let data = TableData {
            corner: "layer".into(),
            cols: vec![String::new(); 4096],
            rows: vec![(String::new(), Vec::new()); 48],
        };
        assert_eq!(data.shown_cols(), MAX_CELLS / 48);
        let small =
            TableData { cols: vec![String::new(); 8], rows: vec![(String::new(), Vec::new()); 4], ..data.clone() };
        assert_eq!(small.shown_cols(), 8);
        let none = TableData { cols: Vec::new(), ..data };
        assert_eq!(none.shown_cols(), 0);
    }
}
