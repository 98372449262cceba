//! `aggrelog bench --sizes ... --plot FILE.svg`: the scaling table as small multiples, one
//! panel per figure: the figure against the log size, its target as a dashed line, and the
//! peers' points at the size they were measured at. Both axes are linear and start
//! at zero, so a cost that grows linearly with the log is a straight line.

use std::path::Path;

use plotters::prelude::*;

/// Width and height of one panel, pixels.
const PANEL_PX: (u32, u32) = (520, 300);

/// Panels per row.
const COLUMNS: usize = 2;

/// Colours of the peers' points, in the order the peers first appear.
const PEER_COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// aggrelog's line.
const LINE: RGBColor = RGBColor(31, 119, 180);

/// One panel: one figure's points against the log size in GB, its target, and the peers'
/// points.
pub struct Panel {
    /// Title, the figure's name.
    pub title: String,
    /// Unit of the y axis.
    pub unit: &'static str,
    /// How the target reads, for the legend.
    pub target_text: &'static str,
    /// aggrelog's points.
    pub measured: Vec<(f64, f64)>,
    /// The target at each size.
    pub target: Vec<(f64, f64)>,
    /// The peers' points: name and point.
    pub peers: Vec<(String, (f64, f64))>,
}

/// Draws `panels` into `svg`, [`COLUMNS`] to a row, and after them a key of the peers' colours
/// (one colour per peer across every panel).
pub fn draw(svg: &Path, panels: &[Panel]) -> Result<(), String> {
    let mut peers: Vec<&str> = Vec::new();
    for (name, _) in panels.iter().flat_map(|p| &p.peers) {
        if !peers.contains(&name.as_str()) {
            peers.push(name);
        }
    }
    let slots = panels.len() + usize::from(!peers.is_empty());
    let rows = slots.div_ceil(COLUMNS);
    let size = (PANEL_PX.0 * COLUMNS as u32, PANEL_PX.1 * rows as u32);
    let root = SVGBackend::new(svg, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let areas = root.split_evenly((rows, COLUMNS));
    let colour = |name: &str| {
        let at = peers.iter().position(|p| *p == name).unwrap_or(0);
        PEER_COLOURS[at % PEER_COLOURS.len()]
    };
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel, &colour)?;
    }
    if let Some(area) = areas.get(panels.len()).filter(|_| !peers.is_empty()) {
        draw_key(area, &peers, &colour)?;
    }
    root.present().map_err(plot_error)
}

/// The key of the peers' points: a triangle of each peer's colour and its name.
fn draw_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    peers: &[&str],
    colour: &dyn Fn(&str) -> RGBColor,
) -> Result<(), String> {
    let title = Text::new(
        "peers (benches/peers, same workload)",
        (60, 40),
        ("sans-serif", 16),
    );
    area.draw(&title).map_err(plot_error)?;
    for (n, name) in peers.iter().enumerate() {
        let y = 75 + 24 * n as i32;
        let marker = TriangleMarker::new((70, y), 6, colour(name).filled());
        area.draw(&marker).map_err(plot_error)?;
        let label = Text::new(name.to_string(), (85, y - 7), ("sans-serif", 14));
        area.draw(&label).map_err(plot_error)?;
    }
    Ok(())
}

/// An axis from zero to past the largest of `values` by `headroom` times.
fn axis(values: impl Iterator<Item = f64>, headroom: f64) -> std::ops::Range<f64> {
    let top = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if top > 0.0 {
        0.0..top * headroom
    } else {
        0.0..1.0
    }
}

/// Room above the data for the legend, as a multiple of the largest value.
const LEGEND_HEADROOM: f64 = 1.35;

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Panel,
    colour: &dyn Fn(&str) -> RGBColor,
) -> Result<(), String> {
    let xs = s.measured.iter().chain(&s.target).map(|p| p.0);
    let ys = s.measured.iter().chain(&s.target).map(|p| p.1);
    let peers_y = s.peers.iter().map(|p| p.1 .1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({})", s.title, s.unit), ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .build_cartesian_2d(axis(xs, 1.15), axis(ys.chain(peers_y), LEGEND_HEADROOM))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("log size, GB")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(s.measured.clone(), LINE.stroke_width(2)))
        .map_err(plot_error)?
        .label("aggrelog")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], LINE.stroke_width(2)));
    chart
        .draw_series(s.measured.iter().map(|p| Circle::new(*p, 3, LINE.filled())))
        .map_err(plot_error)?;
    chart
        .draw_series(DashedLineSeries::new(
            s.target.clone(),
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label(format!("target {}", s.target_text))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    let peers = s.peers.iter();
    let markers = peers.map(|(name, point)| TriangleMarker::new(*point, 5, colour(name).filled()));
    chart.draw_series(markers).map_err(plot_error)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)
}

/// An axis label: 2500000 as 2.5M.
fn short(y: f64) -> String {
    match y {
        y if y >= 1e6 => format!("{:.1}M", y / 1e6),
        y if y >= 1e4 => format!("{:.0}k", y / 1e3),
        y => format!("{y:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned(),
    }
}

fn plot_error(e: impl std::fmt::Display) -> String {
    format!("drawing the plot: {e}")
}
