// The DOM helpers every view of the console shares: nothing of Slipway's
// here, only how an element is made and a message shown.

export const $ = (sel) => document.querySelector(sel);

/**
 * el makes an element: attributes (on* ones are listeners; a false or
 * null value leaves the attribute out) and children (nodes, or text: never
 * parsed as HTML).
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** say shows a message: kind "error" (role=alert) or "info" (role=status). */
export function say(kind, text) {
  const box = kind === "error" ? $("#error") : $("#status");
  box.textContent = text;
  if (kind === "error") $("#status").textContent = "";
  else $("#error").textContent = "";
}

/**
 * table fills tbody with rows (arrays of cells) under columns: each row
 * focusable, opened by a click, Enter or Space, arrow keys moving between
 * rows. key(i) is a row's data-id; open(i) opens it.
 */
export function fillTable(tbody, columns, rows, key, open, selectedKey) {
  const focused = document.activeElement && tbody.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  tbody.replaceChildren();
  rows.forEach((cells, i) => {
    const tr = el("tr", { "data-id": key(i), tabindex: "0", "data-selected": String(key(i) === selectedKey), onclick: () => open(i), onkeydown: (e) => rowKey(e, () => open(i)) });
    cells.forEach((c, j) => tr.append(el("td", { "data-col": columns[j] }, c)));
    tbody.append(tr);
  });
  if (focused) {
    const again = tbody.querySelector(`tr[data-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  return tbody;
}

// rowKey: Enter or Space opens the row, the arrows move to the next or previous one.
export function rowKey(e, open) {
  const tr = e.currentTarget;
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    open();
  } else if (e.key === "ArrowDown" && tr.nextElementSibling) {
    e.preventDefault();
    tr.nextElementSibling.focus();
  } else if (e.key === "ArrowUp" && tr.previousElementSibling) {
    e.preventDefault();
    tr.previousElementSibling.focus();
  }
}

/** header fills a thead's row with column titles. */
export function header(tr, columns) {
  tr.replaceChildren(...columns.map((c) => el("th", { scope: "col" }, c)));
}

/** formValues reads a form's named fields: checkboxes as booleans, the rest as text. */
export function formValues(form) {
  const out = {};
  for (const f of form.elements) {
    if (!f.name) continue;
    if (f.type === "checkbox") out[f.name] = f.checked;
    else if (f.type === "radio") {
      if (f.checked) out[f.name] = f.value;
    } else out[f.name] = f.value;
  }
  return out;
}

/** dl fills a definition list with [label, value] pairs, leaving out empty values. */
export function fillDL(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
  }
}
