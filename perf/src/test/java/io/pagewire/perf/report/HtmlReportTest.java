package io.pagewire.perf.report;

import io.pagewire.agent.Json;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HtmlReportTest {

    @Test
    void textAndDataCannotBreakOutOfThePage(@TempDir Path dir) throws Exception {
        String hostile = "</script><script>alert(1)</script><b>";
        Histogram h = new Histogram(3);
        h.recordValue(1000);
        HtmlReport r = new HtmlReport("title " + hostile).fact("option " + hostile, hostile);
        r.results().put("uri", hostile);
        r.chart("chart " + hostile, "note " + hostile, HtmlReport.percentileCurves(Map.of(hostile, h)));
        Path html = r.write(dir.resolve("report"));
        String page = Files.readString(html);
        assertFalse(page.contains("<script>alert(1)"), "no injected script element");
        assertFalse(page.contains("<b>"), "no injected markup");
        // The raw data round-trips through the .json file unchanged.
        assertEquals(hostile, Json.parseObject(Files.readString(dir.resolve("report.json")), "report data").get("results").get("uri").asString());
        assertTrue(page.contains("data-charts-rendered") && page.contains("echarts"), "the page draws its charts with the inlined library");
    }

    @Test
    void chartHelpersProduceTheSeriesGiven() {
        var bars = HtmlReport.bars("GB/s", List.of("a", "b"), Map.of("run 1", new double[]{1.5, 2.25}));
        assertEquals(2, bars.get("series").get(0).get("data").size());
        assertEquals(2.25, bars.get("series").get(0).get("data").get(1).asDouble());
        var tl = HtmlReport.timeline("MiB", Map.of("remaining", List.of(new double[]{0, 10}, new double[]{0.5, 4})));
        assertEquals(4.0, tl.get("series").get(0).get("data").get(1).get(1).asDouble());
    }
}
