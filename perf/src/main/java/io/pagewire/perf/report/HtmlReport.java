package io.pagewire.perf.report;

import io.pagewire.agent.Json;
import org.HdrHistogram.Histogram;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A self-contained HTML benchmark report: works offline (ECharts, Apache-2.0, from its WebJar on
 * Maven Central is inlined), charts drawn as SVG, the raw results embedded as JSON and written
 * beside it as {@code .json}. Every text that goes into the page is HTML-escaped; the data goes in
 * a {@code <script type="application/json">} block with every {@code <} written as {@code \u003c}.
 *
 * <p>The page marks itself for automated checks: {@code <body data-charts-rendered="N">} once N
 * charts are drawn, and any script error is written into {@code #report-errors} (class
 * {@code failed}).
 */
public final class HtmlReport {
    private static final String ECHARTS = "META-INF/resources/webjars/echarts/5.3.1/dist/echarts.min.js";
    /** HdrHistogram percentiles a latency curve shows (the last point is the maximum). */
    static final double[] PERCENTILES = {50, 75, 90, 95, 99, 99.9, 99.99, 100};

    private final String title;
    private final Map<String, String> facts = new LinkedHashMap<>();
    private final List<ObjectNode> charts = new ArrayList<>();
    private final ObjectNode results = Json.object();

    /** @param title the report's heading */
    public HtmlReport(String title) {
        this.title = title;
        machine().properties().forEach(e -> facts.put(e.getKey(), e.getValue().asString()));
    }

    /** Adds a line to the facts table (options used, references measured). */
    public HtmlReport fact(String name, String value) {
        facts.put(name, value);
        return this;
    }

    /** @return the raw results object, written into the report and the {@code .json} beside it */
    public ObjectNode results() {
        return results;
    }

    /**
     * Adds a chart.
     *
     * @param heading its heading
     * @param note a sentence under the heading saying what is shown
     * @param option the ECharts option object (animation is switched off for it)
     */
    public HtmlReport chart(String heading, String note, ObjectNode option) {
        ObjectNode c = Json.object();
        c.put("heading", heading);
        c.put("note", note);
        option.put("animation", false);
        c.set("option", option);
        charts.add(c);
        return this;
    }

    /** @return the machine the benchmark ran on: cores, memory, kernel, CPU, JVM, load */
    public static ObjectNode machine() {
        ObjectNode m = Json.object();
        m.put("host", read("/proc/sys/kernel/hostname"));
        m.put("kernel", read("/proc/sys/kernel/osrelease"));
        m.put("cpu", read("/proc/cpuinfo").lines().filter(l -> l.startsWith("model name")).findFirst()
                .map(l -> l.substring(l.indexOf(':') + 1).strip()).orElse("unknown"));
        m.put("cores", Integer.toString(Runtime.getRuntime().availableProcessors()));
        m.put("memory", read("/proc/meminfo").lines().filter(l -> l.startsWith("MemTotal")).findFirst()
                .map(l -> l.substring(l.indexOf(':') + 1).strip()).orElse("unknown"));
        m.put("load average at start", read("/proc/loadavg").split(" ").length >= 3
                ? String.join(" ", java.util.Arrays.copyOf(read("/proc/loadavg").split(" "), 3)) : "unknown");
        m.put("java", Runtime.version() + " (" + System.getProperty("java.vm.name") + ")");
        m.put("transparent huge pages", read("/sys/kernel/mm/transparent_hugepage/enabled"));
        return m;
    }

    private static String read(String file) {
        try {
            return Files.readString(Path.of(file)).strip();
        } catch (IOException e) {
            return "unknown (" + e.getMessage() + ")"; // a fact we cannot read is shown as such
        }
    }

    /**
     * Writes {@code base.html} and {@code base.json}.
     *
     * @param base path without extension
     * @return the HTML file
     */
    public Path write(Path base) throws IOException {
        ObjectNode data = Json.object();
        data.put("title", title);
        ObjectNode f = data.putObject("facts");
        facts.forEach(f::put);
        data.set("results", results);
        ArrayNode cs = data.putArray("charts");
        charts.forEach(cs::add);
        Path json = base.resolveSibling(base.getFileName() + ".json");
        Files.writeString(json, Json.write(data) + "\n", StandardCharsets.UTF_8);
        Path html = base.resolveSibling(base.getFileName() + ".html");
        Files.writeString(html, html(data), StandardCharsets.UTF_8);
        return html;
    }

    private String html(ObjectNode data) {
        StringBuilder b = new StringBuilder(1 << 20);
        b.append("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").append(escape(title)).append("</title>\n");
        b.append("""
                <style>
                body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
                table.facts { border-collapse: collapse; margin-bottom: 1.5em; }
                table.facts td { border: 1px solid #ccc; padding: 2px 8px; font-size: 90%; }
                .chart { width: 100%; max-width: 1100px; height: 420px; }
                #report-errors.failed { color: #b00; white-space: pre; border: 2px solid #b00; padding: 1em; }
                p.note { color: #555; max-width: 1100px; }
                </style>
                """);
        b.append("<script>/* ECharts 5.3.1, Apache License 2.0, https://echarts.apache.org */\n").append(echarts()).append("\n</script>\n");
        b.append("</head><body>\n<h1>").append(escape(title)).append("</h1>\n<div id=\"report-errors\"></div>\n<table class=\"facts\">\n");
        facts.forEach((k, v) -> b.append("<tr><td>").append(escape(k)).append("</td><td>").append(escape(v)).append("</td></tr>\n"));
        b.append("</table>\n");
        for (int i = 0; i < charts.size(); i++) {
            JsonNode c = charts.get(i);
            b.append("<section><h2>").append(escape(c.get("heading").asString())).append("</h2><p class=\"note\">")
                    .append(escape(c.get("note").asString())).append("</p><div class=\"chart\" id=\"chart-").append(i).append("\"></div></section>\n");
        }
        b.append("<p class=\"note\">Raw results: the <code>.json</code> file beside this page (the same data as below).</p>\n");
        b.append("<script id=\"report-data\" type=\"application/json\">").append(Json.write(data).replace("<", "\\u003c")).append("</script>\n");
        b.append("""
                <script>
                window.addEventListener('error', function (e) {
                  var box = document.getElementById('report-errors');
                  box.className = 'failed';
                  box.textContent += 'script error: ' + e.message + '\\n';
                });
                (function () {
                  var data = JSON.parse(document.getElementById('report-data').textContent);
                  var drawn = 0;
                  data.charts.forEach(function (c, i) {
                    var chart = echarts.init(document.getElementById('chart-' + i), null, {renderer: 'svg'});
                    chart.setOption(c.option);
                    drawn++;
                  });
                  document.body.setAttribute('data-charts-rendered', String(drawn));
                })();
                </script>
                </body></html>
                """);
        return b.toString();
    }

    private static String echarts() {
        try (InputStream in = HtmlReport.class.getClassLoader().getResourceAsStream(ECHARTS)) {
            if (in == null) {
                throw new IllegalStateException(ECHARTS + " is not on the class path: the perf module depends on org.webjars.npm:echarts");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).replace("</script", "<\\/script");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** @return {@code s} safe as HTML text and attribute content */
    static String escape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            switch (c) {
                case '<' -> b.append("&lt;");
                case '>' -> b.append("&gt;");
                case '&' -> b.append("&amp;");
                case '"' -> b.append("&quot;");
                case '\'' -> b.append("&#39;");
                default -> b.append(c < 0x20 && c != '\n' && c != '\t' ? '?' : c);
            }
        }
        return b.toString();
    }

    // ---- chart helpers ----

    /** @return an ECharts bar chart: one series per entry of {@code series}, values per category */
    public static ObjectNode bars(String yName, List<String> categories, Map<String, double[]> series) {
        ObjectNode o = base(yName);
        ArrayNode cats = o.putObject("xAxis").put("type", "category").putArray("data");
        categories.forEach(cats::add);
        ArrayNode ss = o.putArray("series");
        series.forEach((name, values) -> {
            ObjectNode s = ss.addObject().put("name", name).put("type", "bar");
            ArrayNode d = s.putArray("data");
            for (double v : values) {
                d.add(Json.round(v, 3));
            }
        });
        return o;
    }

    /** @return an ECharts line chart of latency percentiles (us, log scale), one line per histogram (ns) */
    public static ObjectNode percentileCurves(Map<String, Histogram> histograms) {
        ObjectNode o = base("microseconds");
        ((ObjectNode) o.get("yAxis")).put("type", "log");
        ArrayNode cats = o.putObject("xAxis").put("type", "category").put("name", "percentile").putArray("data");
        for (double p : PERCENTILES) {
            cats.add(p == 100 ? "max" : (p == Math.rint(p) ? Long.toString((long) p) : Double.toString(p)) + "%");
        }
        ArrayNode ss = o.putArray("series");
        histograms.forEach((name, h) -> {
            ArrayNode d = ss.addObject().put("name", name).put("type", "line").putArray("data");
            for (double p : PERCENTILES) {
                d.add(Json.round((p == 100 ? h.getMaxValue() : h.getValueAtPercentile(p)) / 1e3, 1));
            }
        });
        return o;
    }

    /** @return an ECharts line chart over time: x in seconds, one series per entry, each a list of [t, y] points */
    public static ObjectNode timeline(String yName, Map<String, List<double[]>> series) {
        return timeline(yName, series, null, java.util.Set.of());
    }

    /**
     * @param rightName name of a second y axis on the right, or null for none
     * @param onRight the series drawn against it (e.g. counts and percentages beside MiB)
     * @return an ECharts line chart over time, as {@link #timeline(String, Map)}
     */
    public static ObjectNode timeline(String yName, Map<String, List<double[]>> series, String rightName, java.util.Set<String> onRight) {
        ObjectNode o = base(yName);
        if (rightName != null) {
            ObjectNode left = (ObjectNode) o.remove("yAxis");
            ArrayNode axes = o.putArray("yAxis");
            axes.add(left);
            axes.addObject().put("type", "value").put("name", rightName).put("position", "right");
        }
        o.putObject("xAxis").put("type", "value").put("name", "s");
        ArrayNode ss = o.putArray("series");
        series.forEach((name, points) -> {
            ObjectNode s = ss.addObject().put("name", name).put("type", "line").put("showSymbol", false);
            if (onRight.contains(name)) {
                s.put("yAxisIndex", 1);
            }
            ArrayNode d = s.putArray("data");
            for (double[] pt : points) {
                d.addArray().add(Json.round(pt[0], 3)).add(Json.round(pt[1], 3));
            }
        });
        return o;
    }

    private static ObjectNode base(String yName) {
        ObjectNode o = Json.object();
        o.putObject("tooltip").put("trigger", "axis");
        o.putObject("legend").put("type", "scroll");
        o.putObject("grid").put("containLabel", true);
        o.putObject("yAxis").put("type", "value").put("name", yName);
        return o;
    }
}
