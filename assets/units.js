// The units bar: a link to the run of the same images in other units opens the view on screen there (its class and
// settings), without what names this run's own units (the selection, its concept test, a comparison).
document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("#units a.units-link");
    if (!link) {
        return;
    }
    const query = new URLSearchParams(window.location.search);
    query.set("run", link.dataset.run);
    for (const name of ["select", "test", "compare"]) {
        query.delete(name);
    }
    link.href = "?" + query.toString();
}, true);
