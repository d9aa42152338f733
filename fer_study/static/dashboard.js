// The live page: draws each update of the event stream `events`; the emotions' colours come from `colors.json`.
"use strict";
const history = [];
let COLORS = {};
const STATES = {
  live: "● live",
  reconnecting: "◌ source lost, reconnecting…",
  stopped: "■ stopped",
  ended: "■ stream ended",
  lost: "■ source lost",
};
const $ = (id) => document.getElementById(id);
const pct = (x) => (x == null ? "–" : Math.round(100 * x) + "%");
function el(tag, cls, text) {
  const e = document.createElement(tag);
  e.className = cls;
  e.textContent = text ?? "";
  return e;
}
function mix(shares) {
  $("mix").replaceChildren(
    ...Object.entries(shares || {})
      .sort((a, b) => b[1] - a[1])
      .map(([name, v]) => {
        const row = el("div", "bar"),
          fill = el("span", "fill");
        Object.assign(fill.style, { width: 60 * v + "%", background: COLORS[name] || "#9d9d9d" });
        row.append(el("span", "name", name), fill, el("span", "pct", pct(v)));
        return row;
      }),
  );
  if (!shares) $("mix").textContent = "no confident face in the window";
}
function trend() {
  const pts = history.filter((p) => p[1] != null),
    t0 = history.length ? history[0][0] : 0;
  const span = Math.max(1e-9, history.length ? history[history.length - 1][0] - t0 : 1);
  $("trend").setAttribute("points", pts.map(([t, v]) => `${(1000 * (t - t0)) / span},${100 - 100 * v}`).join(" "));
}
function tiles(people) {
  $("tiles").replaceChildren(
    ...people.map((p) => {
      const tile = el("div", "tile");
      tile.style.borderLeftColor = COLORS[p.emotion] || "#9d9d9d";
      tile.append(
        el("div", "id", "#" + p.id),
        el("div", "emotion", p.emotion + (p.uncertain ? "?" : "")),
        el("div", "meta", `${pct(p.confidence)} sure · seen ${Math.round(p.seconds)} s`),
      );
      return tile;
    }),
  );
}
// m:ss of a time in the talk; an open end (the part the talk is in) is "now"
const clock = (s) => (s == null ? "now" : `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`);
function parts(live) {
  const rows = live.segments || [];
  $("parts").hidden = !rows.length;
  $("segment").textContent = live.segment ?? "between parts";
  $("segments").tBodies[0].replaceChildren(
    ...rows
      .slice()
      .reverse()
      .map((s) => {
        const row = el("tr", s.end == null ? "current" : ""),
          meter = el("span", "meter"),
          fill = el("span", "");
        fill.style.width = 100 * (s.positive_share ?? 0) + "%";
        meter.append(fill);
        const positive = el("td", "positive");
        positive.append(meter, pct(s.positive_share));
        const dominant = el("td", "dominant", s.dominant ?? "–");
        dominant.style.color = COLORS[s.dominant] || "";
        row.append(el("td", "label", s.label), el("td", "", `${clock(s.start)}–${clock(s.end)}`));
        row.append(el("td", "", s.faces), positive, dominant);
        return row;
      }),
  );
}
function status(live) {
  const latency = live.latency == null ? "–" : live.latency.toFixed(2) + " s";
  const parts = [
    STATES[live.state] || live.state,
    live.sampling,
    "latency " + latency,
    live.dropped + " dropped",
    live.uncertain_faces + " uncertain",
  ];
  if (live.outputs) parts.push("results in " + live.outputs);
  $("status").textContent = parts.join(" · ");
  $("status").className = live.state === "live" ? "" : "alert";
  $("note").hidden = !live.note;
  $("note").textContent = live.note || "";
}
function render(u) {
  $("window").textContent = u.live.window_seconds;
  $("positive").textContent = pct(u.positive_share);
  if (!history.length || u.end > history[history.length - 1][0]) history.push([u.end, u.positive_share]);
  mix(u.share_time_weighted);
  trend();
  tiles(u.live.participants);
  parts(u.live);
  status(u.live);
}
function listen() {
  const events = new EventSource("events");
  events.addEventListener("history", (e) => history.splice(0, history.length, ...JSON.parse(e.data)));
  events.onmessage = (e) => {
    const u = JSON.parse(e.data);
    render(u);
    if (!(u.live.state in { live: 1, reconnecting: 1 })) events.close();
    dispatchEvent(new CustomEvent("fer:update", { detail: u }));
  };
  events.onerror = () => {
    if (events.readyState === EventSource.CONNECTING) $("status").textContent = "dashboard disconnected, retrying…";
  };
}
fetch("colors.json")
  .then((r) => r.json())
  .then((colors) => (COLORS = colors))
  .finally(listen);
