// Compare two runs: a click on a row of the concept table selects its concept; a click on a column's header sorts
// by it (again: the other way).
document.addEventListener("click", (event) => {
    if (!event.target.closest || !window.dash_clientside || !window.dash_clientside.set_props) {
        return;
    }
    const header = event.target.closest("#compare-table th[data-sort]");
    if (header) {
        const descending = !header.textContent.endsWith("▼");
        window.dash_clientside.set_props("compare-sort", {data: {column: header.dataset.sort, descending: descending}});
        return;
    }
    const row = event.target.closest("#compare-table tr[data-concept]");
    if (row) {
        window.dash_clientside.set_props("compare-row", {data: row.dataset.concept});
    }
});
