// Drill-down filters: order the examples (dataset order, worst first, best first) and keep only the
// examples where another adapter's score differs from this one's by at least the page's threshold.
(function () {
  "use strict";
  var container = document.getElementById("examples");
  if (!container) return;
  var order = document.getElementById("order");
  var compare = document.getElementById("compare");
  var shown = document.getElementById("shown");
  var threshold = parseFloat(container.getAttribute("data-threshold")) || 0;
  var examples = Array.prototype.slice.call(container.querySelectorAll("article.example"));

  function score(element) {
    var value = parseFloat(element.getAttribute("data-score"));
    return isNaN(value) ? null : value;
  }

  function otherScore(element, index) {
    var others = JSON.parse(element.getAttribute("data-others") || "[]");
    var value = others[index];
    return typeof value === "number" ? value : null;
  }

  function sortKey(element, mode) {
    if (mode === "position") return parseInt(element.getAttribute("data-position"), 10);
    var value = score(element);
    if (value === null) return Infinity;
    return mode === "worst" ? value : -value;
  }

  function update() {
    var mode = order.value;
    var index = compare.value === "" ? null : parseInt(compare.value, 10);
    var href = index === null ? null : compare.options[compare.selectedIndex].getAttribute("data-href");
    var label = index === null ? "" : compare.options[compare.selectedIndex].textContent;
    var sorted = examples.slice().sort(function (a, b) { return sortKey(a, mode) - sortKey(b, mode); });
    var visible = 0;
    sorted.forEach(function (element) {
      container.appendChild(element);
      var note = element.querySelector(".other");
      note.textContent = "";
      var keep = true;
      if (index !== null) {
        var mine = score(element), theirs = otherScore(element, index);
        keep = mine !== null && theirs !== null && Math.abs(mine - theirs) >= threshold;
        if (theirs !== null) {
          var link = document.createElement("a");
          link.href = href + "#" + element.id;
          link.textContent = label + " = " + theirs.toFixed(3);
          note.appendChild(link);
        }
      }
      element.hidden = !keep;
      if (keep) visible += 1;
    });
    shown.textContent = visible + " of " + examples.length + " shown";
  }

  order.addEventListener("change", update);
  compare.addEventListener("change", update);
  update();
})();
