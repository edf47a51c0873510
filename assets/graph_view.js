// The Graph View's browser side: the panel's size, for the server to lay the summary out at zoom 1 (measured
// when the panel appears and whenever it changes size, debounced); the summary fitted to its frame whenever its
// elements change or its frame moves; and the hover box shown only while the pointer is on a node.
(function () {
  let timer = null, last = "";
  function report(element) {
    const size = {width: Math.round(element.clientWidth), height: Math.round(element.clientHeight)};
    const key = size.width + "x" + size.height;
    if (size.width < 1 || size.height < 1 || key === last) {
      return;
    }
    last = key;
    window.dash_clientside.set_props("graph-size", {data: size});
  }
  function showHover(visible) {
    const box = document.getElementById("graph-hover");
    if (box) {
      box.style.visibility = visible ? "visible" : "hidden";
    }
  }
  function watch() {
    const element = document.getElementById("graph");
    if (!element || !element._cyreg || !window.dash_clientside || !window.dash_clientside.set_props) {
      setTimeout(watch, 100);
      return;
    }
    new ResizeObserver(() => { clearTimeout(timer); timer = setTimeout(() => report(element), 150); }).observe(element);
    const cy = element._cyreg.cy;
    let fitTimer = null;
    function fitLater() {
      clearTimeout(fitTimer);
      fitTimer = setTimeout(() => {
        const frame = cy.nodes(".frame");
        if (frame.length === 2) {
          cy.resize();
          cy.fit(frame, 0);
        }
      }, 30);
    }
    cy.on("add remove", fitLater);
    cy.on("position", ".frame", fitLater);    // the same summary laid out again for a new panel size
    cy.on("mouseover", "node[score]", () => showHover(true));
    cy.on("mouseout", "node[score]", () => showHover(false));
    element.addEventListener("mouseleave", () => showHover(false));   // a pointer that leaves from a node at once
  }
  watch();
})();
