// Building and updating DOM elements without a framework.
//
// h(tag, props, ...children) makes an element: props.class, props.text, props.dataset,
// props.title, on<Event> handlers, any other attribute; children are nodes, strings or
// arrays of them (null and false are skipped). setText/setClass touch the DOM only when the
// value changed, so a render that repeats itself costs reads, not layout. syncRows keeps a
// container's children in the order of a list, reusing the element of each key.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") el.textContent = value;
    else if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function setText(el, text) {
  const value = String(text);
  const only = el.firstChild;
  if (only && only === el.lastChild && only.nodeType === Node.TEXT_NODE) {
    if (only.nodeValue !== value) only.nodeValue = value; // no new node: cheaper than textContent
  } else if (el.textContent !== value) el.textContent = value;
}

// Returns whether it changed anything.
export function setClass(el, className) {
  if (el.className === className) return false;
  el.className = className;
  return true;
}

export function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

// Replace el's children with the given ones.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// Make container's children the rows of items, in order: create(item) builds the element of
// a new key, update(el, item) brings any element up to date. Rows of keys no longer listed go.
export function syncRows(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.key, child);
  let index = 0;
  for (const item of items) {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = create(item);
      row.dataset.key = key;
    }
    update(row, item);
    if (container.children[index] !== row) container.insertBefore(row, container.children[index] ?? null);
    index += 1;
  }
  for (const row of existing.values()) row.remove();
}
