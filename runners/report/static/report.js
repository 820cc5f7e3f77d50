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
    rpsPerGib: function (spec) {
      return {
        type: "bar",
        plugins: [ChartDataLabels],
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data,
              flags: ds.flags,
              backgroundColor: ds.colors,
              legendColor: ds.color,
            };
          }),
        },
        options: {
          indexAxis: "y",
          scales: {
            x: { beginAtZero: true, grace: spec.grace, title: title("requests/s per GiB of summed PSS (peak)") },
          },
          plugins: {
            legend: {
              display: spec.datasets.length > 1,
              position: "bottom",
              labels: {
                /* A dataset's bars vary (pale when flagged): its legend shows its own colour. */
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
              display: function (ctx) {
                return ctx.dataset.data[ctx.dataIndex] !== null;
              },
              anchor: "end",
              align: "end",
              clamp: true,
              font: { size: 11 },
              formatter: function (value, ctx) {
                return whole.format(value) + (ctx.dataset.flags[ctx.dataIndex] ? " ⚑" : "");
              },
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

    pssTime: function (spec) {
      return {
        type: "line",
        data: {
          datasets: spec.datasets.map(function (ds) {
            return {
              label: ds.label,
              data: ds.data,
              borderColor: ds.color,
              backgroundColor: ds.color,
              pointRadius: ds.data.length > 40 ? 0 : 2,
            };
          }),
        },
        options: {
          parsing: true,
          scales: {
            x: { type: "linear", min: 0, title: title("seconds into the measured window") },
            y: { beginAtZero: true, title: title("summed PSS (MiB)") },
          },
          plugins: { legend: { position: "bottom" } },
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
