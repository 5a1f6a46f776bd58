package reports

import (
	"html/template"
	"os"
	"strings"
)

// htmlPage is what index.html shows; every string goes through
// html/template, so target names or notes cannot inject markup.
type htmlPage struct {
	Findings     findingsReport
	AnchorHeader []string
	Headline     []string
	Tables       []workloadTable
	Header       []string
	EnvHeader    []string
	Env          [][]string
	TargetHeader []string
	Targets      [][]string
	Notes        []string
}

// Cells exposes a row's columns to the template.
func (r tableRow) Cells() []string { return r.cells() }

// Class marks floors, cold-cache rows and the best median for the CSS.
func (r tableRow) Class() string {
	switch {
	case r.Floor:
		return "floor"
	case r.Best && r.Cold:
		return "best cold"
	case r.Best:
		return "best"
	case r.Cold:
		return "cold"
	}
	return ""
}

// FiguresText is an anchor's figures for the template.
func (a anchor) FiguresText() string { return figuresText(a) }

// Joined is a finding's sentences as one paragraph.
func (f finding) Joined() string { return strings.Join(f.Sentences, " ") }

func writeHTML(d *dataset, charts []chartFile, fr findingsReport, path string) error {
	t, err := template.New("index").Funcs(template.FuncMap{"slug": slugify}).Parse(indexTemplate)
	if err != nil {
		return err // a bug in the template below, not in the data
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	page := htmlPage{
		Findings: fr, AnchorHeader: anchorHeader(),
		Headline: headline(d.r), Tables: tables(d, charts), Header: mdHeader(),
		EnvHeader: envHeader(), Env: envRows(d),
		TargetHeader: targetHeader(), Targets: targetRows(d), Notes: d.r.Notes,
	}
	if err := t.Execute(f, page); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// indexTemplate is self-contained: inline CSS, no external URLs, so the
// report works offline and from a file:// URL. The small script only
// marks each chart image as loaded (data-ok="1") once the page has
// loaded, and counts the findings laid out with text (data-findings),
// which lets a headless browser prove every chart and finding renders; it
// changes nothing a reader sees.
const indexTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>layerlab benchmark report</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", "Liberation Sans", sans-serif; margin: 0 auto; max-width: 1400px; padding: 1rem 2rem; color: #222; }
h1 { margin-bottom: .3rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }
nav a { margin-right: 1rem; }
ul.meta { color: #555; padding-left: 1.2rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #e3e3e3; padding: .5rem; background: #fff; box-sizing: border-box; flex: 1 1 560px; max-width: 680px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #555; margin-top: .3rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.floor td { color: #666; font-style: italic; background: #fafafa; }
td.rel { min-width: 8rem; overflow-wrap: anywhere; }
tr.best td.rel { font-weight: bold; }
div.scroll { overflow-x: auto; }
p.legend { color: #555; font-size: .9rem; }
div.finding p { max-width: 75rem; line-height: 1.45; }
ul.anchors { font-size: .9rem; max-width: 75rem; }
ul.anchors li.disagrees em { color: #a33; }
ul.anchors li.agrees em { color: #272; }
table.anchors td { max-width: 28rem; }
</style>
</head>
<body>
<h1>layerlab benchmark report</h1>
<section id="findings">
<h2>Findings</h2>
<p class="legend">{{.Findings.Intro}}</p>
{{range .Findings.Findings}}<div class="finding" id="finding-{{.ID}}">
<p><strong>{{.Question}}</strong> {{.Joined}}</p>
{{if .Anchors}}<ul class="anchors">{{range .Anchors}}<li class="{{.Verdict}}">Published, <em>{{.Verdict}}</em> [<a href="{{.Anchor.URL}}">{{.Anchor.ID}}</a>]: {{.Text}}</li>{{end}}</ul>{{end}}
</div>
{{end}}{{if .Findings.NotMeasured}}<p class="legend">Not measured in this run: {{range $i, $q := .Findings.NotMeasured}}{{if $i}}, {{end}}{{$q}}{{end}}.</p>{{end}}
{{if .Findings.Anchors}}<h3>Published results the findings are set against</h3>
<div class="scroll"><table class="anchors">
<thead><tr>{{range .AnchorHeader}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range .Findings.Anchors}}<tr><td><a href="{{.URL}}">{{.ID}}</a></td><td>{{.Source}}</td><td>{{.Published}}</td><td>{{.Setup}}</td><td>{{.FiguresText}}</td><td>{{.Caveat}}</td></tr>{{end}}</tbody>
</table></div>{{end}}
</section>
<h2 id="run">Run</h2>
<ul class="meta">{{range .Headline}}<li>{{.}}</li>{{end}}</ul>
<nav><a href="#findings">findings</a>{{range .Tables}}<a href="#wl-{{slug .Workload}}">{{.Workload}}</a>{{end}}<a href="#environment">environment</a><a href="#targets">targets</a>{{if .Notes}}<a href="#notes">notes</a>{{end}}</nav>
<p class="legend">Medians carry a 95% bootstrap confidence interval. <em>relative</em> is the ratio to the best median among drivers measuring the same op, swept value and cache state (1.00 = best); <em>(N× floor:…)</em> is the same ratio against each floor measured alongside (&gt;1 = worse than the floor). Floors are drawn grey and dashed, cold-cache series dotted and labelled "(cold)".</p>
{{$header := .Header}}
{{range .Tables}}
<section id="wl-{{slug .Workload}}">
<h2>{{.Workload}}</h2>
{{if .Charts}}<div class="charts">
{{range .Charts}}<figure>
<img src="{{.SVG}}" alt="{{.Title}}">
<figcaption>{{.Title}} · <a href="{{.SVG}}">SVG</a> · <a href="{{.PNG}}">PNG</a></figcaption>
</figure>
{{end}}</div>{{end}}
<div class="scroll"><table>
<thead><tr>{{range $header}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr class="{{.Class}}">{{range $i, $c := .Cells}}{{if eq $i 9}}<td class="rel">{{$c}}</td>{{else if ge $i 3}}<td class="num">{{$c}}</td>{{else}}<td>{{$c}}</td>{{end}}{{end}}</tr>
{{end}}</tbody>
</table></div>
</section>
{{end}}
<section id="environment">
<h2>Environment</h2>
<table>
<thead><tr>{{range .EnvHeader}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range .Env}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</tbody>
</table>
</section>
<section id="targets">
<h2>Targets</h2>
<table>
<thead><tr>{{range .TargetHeader}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range .Targets}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</tbody>
</table>
</section>
{{if .Notes}}<section id="notes">
<h2>Notes</h2>
<ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul>
</section>{{end}}
<script>
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    var r = img.getBoundingClientRect();
    img.setAttribute("data-ok", img.complete && img.naturalWidth > 0 && r.width > 0 && r.height > 0 ? "1" : "0");
  });
  // Findings laid out with text: what the browser test checks.
  var shown = 0;
  document.querySelectorAll("#findings div.finding").forEach(function (f) {
    var r = f.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && f.textContent.trim().length > 0) { shown++; }
  });
  document.body.setAttribute("data-findings", String(shown));
  document.body.setAttribute("data-checked", "1");
});
</script>
</body>
</html>
`
