//! The latency-distribution plot: one percentile curve per request kind, as
//! a hand-written SVG. The x axis is the HDR plot's log scale of 1/(1-p)
//! (so 90 %, 99 %, 99.9 % … are evenly spaced); latency is on a log axis
//! too, because the floor and a check's tail are orders of magnitude apart.

use std::fmt::Write as _;

use super::report::Curve;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Nines shown on the x axis: up to 99.9999 %.
const NINES: f64 = 6.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd",
];

/// x position of percentile `p` (0..=100); 100 is drawn at the last tick.
fn x_of(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(10f64.powf(-NINES));
    let nines = (-tail.log10()).clamp(0.0, NINES);
    LEFT + nines / NINES * (WIDTH - LEFT - RIGHT)
}

/// y position of `micros` between the decades `lo` and `hi` (log10 of µs).
fn y_of(micros: u64, lo: f64, hi: f64) -> f64 {
    let v = (micros.max(1) as f64).log10().clamp(lo, hi);
    HEIGHT - BOTTOM - (v - lo) / (hi - lo) * (HEIGHT - TOP - BOTTOM)
}

/// Whole decades (log10 µs) covering every point.
fn decades(curves: &[(String, Curve)]) -> (f64, f64) {
    let values = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1.max(1)));
    let (min, max) = values.fold((u64::MAX, 1), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min == u64::MAX {
        return (1.0, 4.0);
    }
    let lo = (min as f64).log10().floor();
    let hi = (max as f64).log10().ceil().max(lo + 1.0);
    (lo, hi)
}

fn decade_label(decade: f64) -> String {
    let micros = 10f64.powf(decade);
    if micros >= 1000.0 {
        format!("{} ms", micros / 1000.0)
    } else {
        format!("{micros} µs")
    }
}

fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_string(),
        n => format!("{}%", 100.0 - 100.0 * 10f64.powi(-(n as i32))),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `curves` (name, (percentile, µs) points).
pub fn latency_svg(title: &str, curves: &[(String, Curve)]) -> String {
    let (lo, hi) = decades(curves);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="28" font-size="15">{}</text>"#,
        escape(title)
    );
    axes(&mut svg, lo, hi);
    for (i, (name, points)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(p, us)| format!("{:.1},{:.1}", x_of(p), y_of(us, lo, hi)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            escape(name)
        );
        let y = TOP + 20.0 * i as f64;
        let x = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            x + 26.0,
            y + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Grid, ticks and axis titles.
fn axes(svg: &mut String, lo: f64, hi: f64) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    for nines in 0..=NINES as u32 {
        let x = x_of(100.0 - 100.0 * 10f64.powi(-(nines as i32)));
        let x = if nines == 0 { x0 } else { x };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 18.0,
            percentile_label(nines)
        );
    }
    let mut decade = lo;
    while decade <= hi {
        let y = y_of(10f64.powf(decade) as u64, lo, hi);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            decade_label(decade)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        x1 - x0,
        y0 - y1
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        (y0 + y1) / 2.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_polyline_and_legend_entry_per_curve() {
        let curves = vec![
            (
                "content#view".to_string(),
                vec![(0.0, 200), (50.0, 400), (99.0, 2_000), (100.0, 9_000)],
            ),
            ("health <floor>".to_string(), vec![(0.0, 50), (100.0, 300)]),
        ];
        let svg = latency_svg("a & b", &curves);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("health &lt;floor&gt;"));
        assert!(svg.contains("a &amp; b"));
        assert!(svg.contains("99.9%"));
        assert!(svg.contains("10 ms"));
    }

    #[test]
    fn axes_are_monotonic() {
        assert!(x_of(0.0) < x_of(90.0) && x_of(90.0) < x_of(99.9) && x_of(99.9) < x_of(100.0));
        assert_eq!(x_of(100.0), WIDTH - RIGHT);
        assert!(y_of(10, 1.0, 4.0) > y_of(1000, 1.0, 4.0));
        assert_eq!(decades(&[]), (1.0, 4.0));
        assert_eq!(
            decades(&[("x".into(), vec![(0.0, 150), (100.0, 2_500)])]),
            (2.0, 4.0)
        );
    }
}
