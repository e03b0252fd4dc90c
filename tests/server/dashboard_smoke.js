// Runs the dashboard page's script (src/raftkv/server/dashboard_page.html) against a minimal
// stand-in for the DOM and for EventSource (no browser here): the stream opens, delivers the
// recorded snapshots, then drops. tests/server/test_dashboard_page.py evaluates it in QuickJS
// with the page's text in the global `page` and the snapshots' JSON in `snapshots`; its value
// is the JSON of what the DOM showed after each snapshot. A JavaScript error fails the test.
"use strict";
const code = page.match(/<script>([\s\S]*?)<\/script>/)[1];

class Node {
  constructor(tag, id) {
    this.tagName = tag.toUpperCase(); this.id = id || ""; this.childNodes = []; this.attributes = {};
    this._text = ""; this.className = ""; this.namespaceURI = "svg-ns";
  }
  get firstChild() { return this.childNodes[0] || null; }
  get lastChild() { return this.childNodes[this.childNodes.length - 1] || null; }
  appendChild(child) { this.childNodes.push(child); return child; }
  removeChild(child) {
    const at = this.childNodes.indexOf(child);
    if (at < 0) throw new Error("removeChild: not a child");
    this.childNodes.splice(at, 1);
    return child;
  }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  getAttribute(name) { return this.attributes[name]; }
  set textContent(text) { this._text = String(text); this.childNodes = []; }
  get textContent() { return this._text + this.childNodes.map((c) => c.textContent).join(""); }
}
const byId = {};
const document = {
  getElementById(id) { return byId[id] || (byId[id] = new Node("div", id)); },
  createElement: (tag) => new Node(tag),
  createElementNS: (ns, tag) => {
    if (ns !== "svg-ns") throw new Error("an SVG element outside the chart's namespace");
    return new Node(tag);
  },
  createTextNode: (text) => { const node = new Node("#text"); node.textContent = text; return node; },
};
// The progress table starts with its heading row, as in the page.
document.getElementById("progress").appendChild(new Node("tr"));

const sources = [];
class EventSource {
  constructor(url) { this.url = url; this.readyState = 0; sources.push(this); }
}
class URLSearchParams {
  constructor(search) { this.search = search; }
  get(name) { const m = this.search.match(new RegExp("[?&]" + name + "=([^&]*)")); return m ? m[1] : null; }
}
const timers = [];
const setTimeout = (callback) => timers.push(callback);
const location = { search: "?token=reader-token" };
const window = {};
new Function("document", "window", "EventSource", "URLSearchParams", "location", "setTimeout", code)(
  document, window, EventSource, URLSearchParams, location, setTimeout);

function seen() {
  const dashboard = window.dashboard;
  const el = (id) => document.getElementById(id);
  return {
    connected: dashboard.connected,
    leader: el("leader").textContent,
    connection: el("connection").textContent,
    nodes: el("nodes").childNodes.map((node) => ({
      className: node.attributes.class,
      id: node.attributes["data-id"], role: node.attributes["data-role"],
      term: node.attributes["data-term"], status: node.attributes["data-status"],
      text: node.textContent,
    })),
    logCells: el("logs").childNodes.map((row) => row.childNodes.length - 1),
    progressRows: el("progress").childNodes.length - 1,
    timeline: el("timeline").childNodes.map((line) => line.textContent),
    throughputPaths: el("throughput").childNodes.length,
    latencyPaths: el("latency").childNodes.length,
    throughputNow: el("throughput-now").textContent,
    snapshotLeader: dashboard.snapshot ? dashboard.snapshot.leader : null,
  };
}

const result = { url: sources[0].url, before: seen(), after: [] };
const source = sources[0];
source.onopen();
for (const snapshot of JSON.parse(snapshots)) {
  source.onmessage({ data: JSON.stringify(snapshot) });
  result.after.push(seen());
}
source.readyState = 2;  // refused or closed for good: the page must retry by itself
source.onerror();
result.dropped = seen();
result.retries = timers.length;
timers.shift()();
result.reconnected = sources.length;
JSON.stringify(result);
