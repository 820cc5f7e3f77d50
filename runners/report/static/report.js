/* Builds a run report's charts from the JSON embedded in the page
   (<script type="application/json" id="report-data">), through the
   Chart.js and chartjs-plugin-datalabels APIs. No drawing code here: each
   function only turns a chart's data into a Chart.js configuration. */
(function () {
  "use strict";
  var source = document.getElementById("report-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var specs = JSON.parse(source.textContent).charts;
  var whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.responsive = true;
  Chart.defaults.color = "#1a1a1a";
  Chart.defaults.font.family = window.getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.plugins.legend.labels.boxWidth = 14;
  /* Data labels are opt-in per chart. */
  Chart.defaults.plugins.datalabels = { display: false };

  function title(text) {
    return { display: true, text: text };
  }

  var builders = {
    /* One bar per runner (and users level), the figure; over it, thinner, its band
       (a floating bar from low to high, in the same slot: the same stack on the index
       axis, never stacked on the value axis). An open band (a lower bound: high null)
       runs paler to spec.bandEnd, without an end border. A bar's text sits past its
       band when the band is closed, on a white ground over an open one. */
    rpsPerGib: function (spec) {
      var datasets = [];
      var anyBand = false;
      spec.datasets.forEach(function (ds, index) {
        var stack = "level-" + index;
        var bands = ds.bands || [];
        function closedBand(i) {
          return Boolean(bands[i]) && bands[i][1] !== null;
        }
        datasets.push({
          label: ds.label,
          data: ds.data,
          backgroundColor: ds.colors,
          legendColor: ds.color,
          stack: stack,
          datalabels: {
            display: function (ctx) {
              return ctx.dataset.data[ctx.dataIndex] !== null && !closedBand(ctx.dataIndex);
            },
            backgroundColor: function (ctx) {
              return bands[ctx.dataIndex] ? "rgba(255, 255, 255, 0.9)" : null;
            },
            formatter: function (value, ctx) {
              return ds.texts[ctx.dataIndex];
            },
          },
        });
        if (
          !bands.some(function (band) {
            return band !== null;
          })
        ) {
          return;
        }
        anyBand = true;
        datasets.push({
          label: ds.bandLabel,
          data: bands.map(function (band) {
            return band === null ? null : [band[0], band[1] === null ? spec.bandEnd : band[1]];
          }),
          stack: stack,
          barPercentage: 0.32,
          backgroundColor: bands.map(function (band) {
            return band !== null && band[1] === null ? "rgba(26, 26, 26, 0.12)" : "rgba(26, 26, 26, 0.3)";
          }),
          borderColor: "#1a1a1a",
          borderWidth: 1.5,
          borderSkipped: function (ctx) {
            return closedBand(ctx.dataIndex) ? false : "end";
          },
          legendColor: "rgba(26, 26, 26, 0.45)",
          datalabels: {
            display: function (ctx) {
              return closedBand(ctx.dataIndex);
            },
            formatter: function (value, ctx) {
              return ds.texts[ctx.dataIndex];
            },
          },
        });
      });
      return {
        type: "bar",
        plugins: [ChartDataLabels],
        data: { labels: spec.labels, datasets: datasets },
        options: {
          indexAxis: "y",
          scales: {
            x: {
              beginAtZero: true,
              stacked: false,
              grace: spec.grace,
              title: title(spec.xTitle || "requests/s per GiB of summed PSS (peak)"),
            },
            y: { ticks: { autoSkip: false } },
          },
          plugins: {
            legend: {
              display: spec.datasets.length > 1 || anyBand,
              position: "bottom",
              labels: {
                /* A dataset's bars vary (pale when unranked): its legend shows its own colour. */
                generateLabels: function (chart) {
                  var items = Chart.defaults.plugins.legend.labels.generateLabels(chart);
                  items.forEach(function (item) {
                    var color = chart.data.datasets[item.datasetIndex].legendColor;
                    item.fillStyle = color;
                    item.strokeStyle = color;
                  });
                  return items;
                },
              },
            },
            datalabels: {
              anchor: "end",
              align: "end",
              clamp: true,
              padding: { top: 1, bottom: 1, left: 3, right: 3 },
              font: { size: 11 },
            },
          },
        },
      };
    },

    latency: function (spec) {
      return {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (ds) {
            return { label: ds.label, data: ds.data, backgroundColor: ds.color };
          }),
        },
        options: {
          scales: { y: { beginAtZero: true, title: title("milliseconds") } },
          plugins: { legend: { position: "bottom" } },
        },
      };
    },

    concurrency: function (spec) {
      return {
        type: "line",
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data,
              borderColor: ds.color,
              backgroundColor: ds.color,
              pointRadius: 4,
              spanGaps: true,
            };
          }),
        },
        options: {
          scales: {
            x: { title: title("users (concurrency)") },
            y: { beginAtZero: true, title: title(spec.yTitle) },
          },
          plugins: { legend: { position: "bottom" } },
        },
      };
    },

    memory: function (spec) {
      return {
        type: "bar",
        plugins: [ChartDataLabels],
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (ds) {
            return { label: ds.label, data: ds.data, backgroundColor: ds.color, textColor: ds.textColor };
          }),
        },
        options: {
          indexAxis: "y",
          scales: {
            x: { stacked: true, beginAtZero: true, title: title("MiB") },
            y: { stacked: true },
          },
          plugins: {
            legend: { position: "bottom" },
            datalabels: {
              /* Only where the segment is wide enough to hold its number. */
              display: function (ctx) {
                var value = ctx.dataset.data[ctx.dataIndex];
                var scale = ctx.chart.scales.x;
                return value !== null && scale.getPixelForValue(value) - scale.getPixelForValue(0) > 30;
              },
              color: function (ctx) {
                return ctx.dataset.textColor;
              },
              font: { size: 10.5 },
              formatter: function (value) {
                return whole.format(value);
              },
            },
          },
        },
      };
    },

    /* Summed PSS per runner; where the server had a cgroup, its working set dashed
       beside it, its memory limit dotted, and each OOM kill a red cross. */
    pssTime: function (spec) {
      return {
        type: "line",
        data: {
          datasets: spec.datasets.map(function (ds) {
            var marks = ds.kind === "oom";
            return {
              label: ds.label,
              kind: ds.kind,
              data: ds.data,
              borderColor: marks ? "#B00020" : ds.color,
              backgroundColor: marks ? "#B00020" : ds.color,
              borderDash: ds.kind === "working-set" ? [6, 4] : ds.kind === "limit" ? [2, 3] : [],
              borderWidth: ds.kind === "limit" ? 1.5 : 2,
              showLine: !marks,
              pointStyle: marks ? "crossRot" : "circle",
              pointRadius: marks ? 7 : ds.kind === "limit" || ds.data.length > 40 ? 0 : 2,
            };
          }),
        },
        options: {
          parsing: true,
          scales: {
            x: { type: "linear", min: 0, title: title("seconds into the measured window") },
            y: { beginAtZero: true, title: title(spec.yTitle || "summed PSS (MiB)") },
          },
          plugins: {
            legend: {
              position: "bottom",
              labels: {
                /* One entry per runner, and one for the OOM kills: the dashed and
                   dotted lines share the runner's colour (the note says which is which). */
                filter: function (item, data) {
                  var kind = data.datasets[item.datasetIndex].kind;
                  if (kind === "oom") {
                    return data.datasets.findIndex(function (ds) {
                      return ds.kind === "oom";
                    }) === item.datasetIndex;
                  }
                  return !kind;
                },
              },
            },
          },
        },
      };
    },

    /* The capacity search's probes against the offered rate, one line per runner
       (a hollow point missed the target), each runner's capacity as a diamond,
       and the reference: achieved = offered, or the latency target. Log axes:
       runners whose capacities differ tenfold share one chart. */
    saturation: function (spec) {
      var low = spec.span[0] * 0.85;
      var high = spec.span[1] * 1.15;
      var datasets = spec.datasets.map(function (ds) {
        var disputed = ds.disputed || [];
        return {
          label: ds.label,
          data: ds.data,
          borderColor: ds.color,
          backgroundColor: ds.color,
          pointBackgroundColor: ds.passed.map(function (passed) {
            return passed ? ds.color : "#ffffff";
          }),
          /* A disputed point (its takes disagreed, none left to settle them): a triangle. */
          pointStyle: ds.data.map(function (_, i) {
            return disputed[i] ? "triangle" : "circle";
          }),
          pointRadius: ds.data.map(function (_, i) {
            return disputed[i] ? 6 : 3.5;
          }),
          pointBorderColor: ds.color,
          pointBorderWidth: 1.5,
          borderWidth: 2,
        };
      });
      /* Marks off the lines, one per point, each in its runner's colour: as the
         border (a cross) or as the fill (a diamond with a dark border). */
      function marks(label, points, style, radius, fill) {
        var colors = points.map(function (point) {
          return point.color;
        });
        return {
          label: label,
          data: points.map(function (point) {
            return { x: point.x, y: point.y };
          }),
          showLine: false,
          pointStyle: style,
          pointRadius: radius,
          pointHoverRadius: radius + 1,
          pointBackgroundColor: fill ? colors : "#1a1a1a",
          pointBorderColor: fill ? "#1a1a1a" : colors,
          pointBorderWidth: fill ? 1.5 : 2,
          backgroundColor: "#1a1a1a",
          borderColor: "#1a1a1a",
        };
      }
      /* The takes the search did not believe (it took the rate again): crosses. */
      if (spec.retaken && spec.retaken.length) {
        datasets.push(marks("retaken (not believed)", spec.retaken, "crossRot", 6, false));
      }
      datasets.push(marks("capacity (the knee)", spec.knees, "rectRot", 8, true));
      var reference =
        spec.figure === "rate"
          ? { label: "achieved = offered", y0: low, y1: high, color: "#8a939c", dash: [5, 4] }
          : { label: spec.targetLabel, y0: spec.target, y1: spec.target, color: "#c0392b", dash: [7, 4] };
      if (reference.y0 !== null && reference.y0 !== undefined) {
        datasets.push({
          label: reference.label,
          data: [
            { x: low, y: reference.y0 },
            { x: high, y: reference.y1 },
          ],
          borderColor: reference.color,
          backgroundColor: reference.color,
          borderDash: reference.dash,
          borderWidth: 1.5,
          pointRadius: 0,
          pointHitRadius: 0,
          pointStyle: "line",
        });
      }
      /* Chart.js calls a tick callback with the scale as this. */
      function tick(value) {
        var dense = this.max / this.min < 8;
        var mantissa = Math.round((value / Math.pow(10, Math.floor(Math.log10(value)))) * 1000) / 1000;
        var shown = dense ? mantissa === Math.round(mantissa) : [1, 2, 5].indexOf(mantissa) >= 0;
        return shown ? whole.format(value) : "";
      }
      var y = { type: "logarithmic", title: title(spec.yTitle), ticks: { callback: tick, autoSkip: false } };
      if (spec.figure === "rate") {
        y.min = low;
        y.max = high;
      }
      return {
        type: "line",
        data: { datasets: datasets },
        options: {
          scales: {
            x: {
              type: "logarithmic",
              min: low,
              max: high,
              title: title("offered rate (req/s, log scale)"),
              ticks: { callback: tick, autoSkip: false },
            },
            y: y,
          },
          plugins: {
            legend: {
              position: "bottom",
              labels: {
                usePointStyle: true,
                /* The knees' and the retaken takes' legend entries: plain marks, not the
                   first runner's colour; a runner's entry: a circle, whatever its points. */
                generateLabels: function (chart) {
                  var items = Chart.defaults.plugins.legend.labels.generateLabels(chart);
                  items.forEach(function (item) {
                    var dataset = chart.data.datasets[item.datasetIndex];
                    if (dataset.showLine === false) {
                      item.fillStyle = "#ffffff";
                      item.strokeStyle = "#1a1a1a";
                    } else if (Array.isArray(dataset.pointStyle)) {
                      item.pointStyle = "circle";
                    }
                  });
                  return items;
                },
              },
            },
          },
        },
      };
    },

    /* Soak runs: memory per process (or of the mean worker) over time; solid
       lines shared, dashed lines private; one y scale for every soak chart. */
    soakTime: function (spec) {
      return {
        type: "line",
        data: {
          datasets: spec.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data,
              borderColor: ds.color,
              backgroundColor: ds.color,
              borderDash: ds.dash ? [6, 4] : [],
              borderWidth: 2,
              pointRadius: ds.data.length > 40 ? 0 : 2,
            };
          }),
        },
        options: {
          parsing: true,
          scales: {
            x: { type: "linear", min: 0, title: title("seconds since the server was ready (load starts at once)") },
            y: { beginAtZero: true, suggestedMax: spec.yMax, title: title(spec.yTitle) },
          },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 18 } } },
        },
      };
    },
  };

  var charts = [];
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var spec = specs[canvas.getAttribute("data-chart")];
    if (!spec || !builders[spec.kind]) {
      throw new Error("report: no chart data for " + canvas.getAttribute("data-chart"));
    }
    charts.push(new Chart(canvas, builders[spec.kind](spec)));
  });
  window.reportCharts = charts;
  document.documentElement.setAttribute("data-charts-drawn", String(charts.length));
})();
