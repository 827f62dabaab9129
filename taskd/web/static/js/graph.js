// A task's dependencies drawn as a graph: the task, what it depends on, what those depend
// on, and so on (fetched over REST breadth first, at most `maxNodes` tasks), laid out left to
// right by dagre (vendored) so that every arrow points from a dependency to its dependent.
// A dependency the node no longer knows (404) is drawn dashed as "not found".

import dagre from "../vendor/dagre.esm.js";
import { svg } from "./dom.js";
import { shortId } from "./format.js";

const NODE_W = 176;
const NODE_H = 46;
const PARALLEL = 6;

// {nodes: Map id -> task | {id, missing: true}, edges: [[dependency, dependent]], truncated}
export async function loadDependencies(root, getTask, { maxNodes = 60 } = {}) {
  const nodes = new Map([[root.id, root]]);
  const edges = [];
  let frontier = [root];
  let truncated = false;
  while (frontier.length) {
    const wanted = [];
    for (const task of frontier) {
      for (const dep of task.depends_on ?? []) {
        edges.push([dep, task.id]);
        if (nodes.has(dep) || wanted.includes(dep)) continue;
        if (nodes.size + wanted.length >= maxNodes) {
          truncated = true;
          continue;
        }
        wanted.push(dep);
      }
    }
    const found = [];
    for (let i = 0; i < wanted.length; i += PARALLEL) {
      const batch = wanted.slice(i, i + PARALLEL);
      const answers = await Promise.all(
        batch.map((id) =>
          getTask(id).then(
            (task) => task,
            (err) => {
              if (err.status === 404) return { id, missing: true };
              throw err;
            },
          ),
        ),
      );
      for (const task of answers) {
        nodes.set(task.id, task);
        if (!task.missing) found.push(task);
      }
    }
    frontier = found;
  }
  return { nodes, edges: edges.filter(([dep]) => nodes.has(dep)), truncated };
}

function layout(graph) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 56, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of graph.nodes.keys()) g.setNode(id, { width: NODE_W, height: NODE_H });
  for (const [dep, id] of graph.edges) g.setEdge(dep, id);
  dagre.layout(g);
  return g;
}

function label(task) {
  if (task.missing) return shortId(task.id);
  const name = task.name || task.queue;
  return name.length > 22 ? `${name.slice(0, 21)}…` : name;
}

// Draw into container; returns {setState(id, state)} to recolour a node as it moves.
export function drawDependencies(container, graph, { currentId, onSelect }) {
  const g = layout(graph);
  const { width, height } = g.graph();
  const root = svg("svg", {
    width: Math.ceil(width),
    height: Math.ceil(height),
    viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`,
    role: "img",
    "aria-label": `dependency graph of ${graph.nodes.size} tasks`,
  });
  root.append(
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
  );
  for (const e of g.edges()) {
    const pts = g.edge(e).points;
    const d = pts.map((p, i) => `${i ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(" ");
    root.append(svg("path", { d, class: "edge", "marker-end": "url(#arrow)", "data-from": e.v, "data-to": e.w }));
  }
  const byId = new Map();
  for (const [id, task] of graph.nodes) {
    const n = g.node(id);
    const x = n.x - NODE_W / 2;
    const y = n.y - NODE_H / 2;
    const state = task.missing ? "not found" : task.state;
    const stateText = svg("text", { x: 10, y: 36, class: "state", text: state });
    const node = svg(
      "g",
      {
        class: `gnode state-${task.missing ? "missing" : task.state}${task.missing ? " missing" : ""}${id === currentId ? " current" : ""}`,
        transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})`,
        "data-id": id,
        tabindex: 0,
        onclick: () => onSelect(id),
        onkeydown: (ev) => ev.key === "Enter" && onSelect(id),
      },
      svg("title", { text: task.missing ? `${id}: the node does not know this task (any more)` : `${id}\nqueue ${task.queue} · ${task.state}` }),
      svg("rect", { width: NODE_W, height: NODE_H, rx: 7 }),
      svg("text", { x: 10, y: 19, text: label(task) }),
      stateText,
      svg("text", { x: NODE_W - 10, y: 36, "text-anchor": "end", class: "id", text: shortId(id) }),
    );
    byId.set(id, { node, stateText, task });
    root.append(node);
  }
  container.replaceChildren(root);
  return {
    has: (id) => byId.has(id),
    setState(id, state) {
      const entry = byId.get(id);
      if (!entry || entry.task.missing || entry.task.state === state) return;
      entry.task = { ...entry.task, state };
      entry.node.setAttribute("class", `gnode state-${state}${id === currentId ? " current" : ""}`);
      entry.stateText.textContent = state;
    },
  };
}
