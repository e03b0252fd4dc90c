// Runs a replay page's script against a minimal stand-in for the DOM (no browser here), then
// walks every step and the controls: a JavaScript error anywhere fails. tests/sim/
// test_replay.py evaluates it in QuickJS (the `quickjs` package, a test dependency) with the
// page's text in the global `page`; its value is the JSON of what it saw. A real-browser
// test is separate.
"use strict";
const json = page.match(/<script type="application\/json" id="replay-data">([\s\S]*?)<\/script>/)[1];
const code = page.match(/<script>([\s\S]*?)<\/script>/)[1];

class Element {
  constructor(tag, id) {
    this.tagName = tag.toUpperCase(); this.id = id || ""; this.children = []; this.attributes = {};
    this.dataset = {}; this.style = {}; this._text = ""; this.value = "0"; this.namespaceURI = "svg-ns";
  }
  appendChild(child) { this.children.push(child); return child; }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  getAttribute(name) { return this.attributes[name]; }
  set textContent(text) { this._text = String(text); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set innerHTML(text) { this._text = String(text); this.children = []; }
  get innerHTML() { return this._text; }
}
const byId = {};
const document = {
  body: new Element("body"),
  getElementById(id) {
    if (id === "replay-data") return { textContent: json };
    return byId[id] || (byId[id] = new Element("div", id));
  },
  createElement: (tag) => new Element(tag),
  createElementNS: (ns, tag) => new Element(tag),
  createTextNode: (text) => { const e = new Element("#text"); e.textContent = text; return e; },
  addEventListener(kind, handler) { this["on" + kind] = handler; },
};
document.getElementById("speed").value = "5";
document.getElementById("event-kind").value = "election";
const window = {};
const frames = [];
const requestAnimationFrame = (callback) => frames.push(callback);
new Function("document", "window", "requestAnimationFrame", code)(document, window, requestAnimationFrame);

const replay = window.replay;
const result = { count: replay.count, roles: {}, violated: [], leaderStep: null };
for (let n = 0; n < replay.count; n++) {
  replay.goTo(n);
  if (replay.step !== n) throw new Error("goTo(" + n + ") landed on " + replay.step);
  const status = byId.invariants.dataset.status;
  if (status === "violated" && result.violated.length === 0) result.violated.push(n, byId["invariant-status"].textContent);
  for (const node of byId.nodes.children) {
    const role = node.dataset.role;
    result.roles[role] = (result.roles[role] || 0) + 1;
    if (role === "leader" && result.leaderStep === null) result.leaderStep = n;
  }
}
replay.goTo(0); replay.next(); replay.prev();
for (const kind of ["election", "fault", "violation", "client"]) {
  byId["event-kind"].value = kind;
  byId["next-event"].onclick(); byId["prev-event"].onclick();
}
document.onkeydown({ key: "ArrowRight", target: document.body, preventDefault() {} });
document.onkeydown({ key: "ArrowLeft", target: document.body, preventDefault() {} });
byId.play.onclick();
for (let t = 0; t < 5 && frames.length; t++) frames.shift()(1000 * t);
byId.play.onclick();
result.time = byId.time.textContent;
JSON.stringify(result);
