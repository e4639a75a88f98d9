// Sortable tables: click a header to sort by that column; click again to reverse.
// Cells sort on their data-sort attribute when present (raw numbers), else on their text.
// Empty values always sort last, whatever the direction.
(function () {
  "use strict";

  // The cell under header `index`: a failed row spans its metric columns with one reason cell.
  function cellAt(row, index) {
    var column = 0;
    for (var i = 0; i < row.cells.length; i++) {
      column += row.cells[i].colSpan || 1;
      if (column > index) return row.cells[i];
    }
    return null;
  }

  function cellValue(row, index, numeric) {
    var cell = cellAt(row, index);
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "" || raw === "–") return null;
    if (numeric) {
      var number = parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw.toLowerCase();
  }

  function sortTable(table, index, header) {
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function install(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.tabIndex = 0;
      header.title = header.title || "sort by this column";
      header.addEventListener("click", function () { sortTable(table, index, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, index, header); }
      });
    });
  }

  document.querySelectorAll("table.sortable").forEach(install);

  // Filters (method, base, rank) hide rows whose data-* value differs; checkboxes show column groups
  // (per-field metrics, cost and timing) that the table hides by default so it fits the page.
  function installFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    if (!table) return;
    var selects = box.querySelectorAll("select[data-filter]");
    function apply() {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var shown = Array.prototype.every.call(selects, function (select) {
          return select.value === "" || row.getAttribute("data-" + select.getAttribute("data-filter")) === select.value;
        });
        row.hidden = !shown;
      });
    }
    Array.prototype.forEach.call(selects, function (select) { select.addEventListener("change", apply); });
    box.querySelectorAll("input[data-toggle]").forEach(function (box) {
      box.addEventListener("change", function () {
        table.classList.toggle("hide-" + box.getAttribute("data-toggle"), !box.checked);
      });
    });
  }

  document.querySelectorAll(".filters[data-table]").forEach(installFilters);
})();
