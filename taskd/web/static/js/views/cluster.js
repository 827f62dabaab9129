// The cluster as this node sees it (snapshot and `cluster` messages): its role and term, the
// leader, the commit index, and every member with its role, match index, replication lag
// and reachability. A follower does not know the others' match index: shown as "—".

import { h, setClass, setText, syncRows } from "../dom.js";
import * as fmt from "../format.js";

export function mountCluster(root, { model }) {
  const facts = {};
  const factBox = h("div", { class: "cards", id: "cluster-facts" });
  for (const [key, label] of [["id", "this node"], ["role", "role"], ["term", "term"], ["leader", "leader"], ["commit_index", "commit index"]]) {
    facts[key] = h("div", { class: "value mono" });
    factBox.append(h("div", { class: "card", dataset: { fact: key } }, h("div", { class: "label", text: label }), facts[key]));
  }
  const body = h("tbody", { id: "member-rows" });
  const note = h("span", { class: "sub" });
  root.append(
    h("div", { class: "view-head" }, h("h1", { text: "Cluster" })),
    factBox,
    h(
      "div",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", { text: "Members" }), note),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "members" },
          h("thead", {}, h("tr", {}, h("th", { text: "Member" }), h("th", { text: "Role" }), h("th", { class: "num", text: "Match index" }), h("th", { class: "num", text: "Lag (entries)" }), h("th", { text: "Reachable" }))),
          body,
        ),
      ),
    ),
  );

  function row() {
    const c = { address: h("span", { class: "mono" }), role: h("span"), match: h("td", { class: "num" }), lag: h("td", { class: "num" }), reach: h("span") };
    const tr = h("tr", {}, h("td", {}, c.address), h("td", {}, c.role), c.match, c.lag, h("td", {}, c.reach));
    tr.cells_ = c;
    return tr;
  }

  return {
    render(dirty) {
      if (!dirty.has("cluster")) return;
      const cl = model.cluster;
      if (!cl) return;
      for (const key of Object.keys(facts)) setText(facts[key], cl[key] ?? fmt.NONE);
      const leaderView = cl.role === "leader";
      setText(note, leaderView ? "lag: entries the leader has that the member has not acknowledged" : "as a follower sees it: only the leader knows each member's match index");
      syncRows(body, cl.members ?? [], (m) => m.address, row, (tr, m) => {
        const c = tr.cells_;
        const self = m.address === cl.id;
        setText(c.address, self ? `${m.address} (this node)` : m.address);
        setText(c.role, m.role);
        setClass(c.role, `pill role-${m.role}`);
        const known = leaderView && m.match_index !== null && m.match_index !== undefined;
        setText(c.match, known ? fmt.count(m.match_index) : fmt.NONE);
        setText(c.lag, known ? fmt.count(Math.max(0, (cl.commit_index ?? 0) - m.match_index)) : fmt.NONE);
        setText(c.reach, m.reachable ? "yes" : "no");
        setClass(c.reach, m.reachable ? "pill good" : "pill bad");
      });
    },
  };
}
