// Explain an image: a click on an example patch asks for its image (one this page has shown is shown again at once,
// with the class it was predicted, set only when another is shown); an upload is sent only if the server takes its
// size; the heat map's opacity follows its slider.
const explainState = {run: null, known: {}, shownClass: null};

document.addEventListener("click", (event) => {
    const patch = event.target.closest ? event.target.closest("img.pickable[data-image]") : null;
    if (!patch || !window.dash_clientside || !window.dash_clientside.set_props) {
        return;
    }
    const reference = "run:" + patch.dataset.image;
    const predicted = explainState.known[explainState.run + "|" + reference];
    if (predicted !== undefined) {
        window.dash_clientside.set_props("explain-status", {children: ""});
        if (predicted !== explainState.shownClass) {     // the same class set again would redraw every view
            window.dash_clientside.set_props("class", {value: predicted});
        }
        window.dash_clientside.set_props("explained", {data: reference});
        return;
    }
    window.dash_clientside.set_props("image-pick", {data: {reference: reference, switch: true}});
});

window.dash_clientside = Object.assign({}, window.dash_clientside, {
    explain: {
        checkUpload: function (contents, filename, limit) {
            const noUpdate = window.dash_clientside.no_update;
            if (!contents) {
                return [noUpdate, noUpdate];
            }
            const bytes = Math.floor((contents.length - contents.indexOf(",") - 1) * 3 / 4);
            if (bytes > limit) {
                const megabytes = (bytes / 1048576).toFixed(1);
                return [noUpdate, "Not explained: the file is " + megabytes + " MB; images up to " +
                        Math.floor(limit / 1048576) + " MB are taken"];
            }
            return [{contents: contents, filename: filename || ""}, "uploading " + (filename || "the image") + "…"];
        },
        heatOpacity: function (opacity) {
            return {opacity: opacity};
        },
        mirror: function (run, known, shownClass) {
            explainState.run = run;
            explainState.known = known || {};
            explainState.shownClass = shownClass;
            return window.dash_clientside.no_update;
        },
    },
});
