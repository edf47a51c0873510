// The graph panel's size, for the server to lay the summary out at zoom 1: measured when the panel appears
// and whenever it changes size (window resize), debounced.
(function () {
  let timer = null, last = "";
  function report(element) {
    const size = {width: Math.round(element.clientWidth), height: Math.round(element.clientHeight)};
    const key = size.width + "x" + size.height;
    if (size.width < 1 || size.height < 1 || key === last || !window.dash_clientside || !window.dash_clientside.set_props) {
      return;
    }
    last = key;
    window.dash_clientside.set_props("graph-size", {data: size});
  }
  function watch() {
    const element = document.getElementById("graph");
    if (!element || !window.dash_clientside || !window.dash_clientside.set_props) {
      setTimeout(watch, 100);
      return;
    }
    new ResizeObserver(() => { clearTimeout(timer); timer = setTimeout(() => report(element), 150); }).observe(element);
  }
  watch();
})();
