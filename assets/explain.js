// Explain an image: a click on an example patch asks for its image (one this page has shown is shown again at once,
// with the class it was predicted, set only when another is shown); an upload is sent only if the server takes its
// size; the heat map's opacity follows its slider; the projection is coloured by the image once the page shows it.
const explainState = {run: null, known: {}, shownClass: null, projectionAsked: null};
const PROJECTION_DELAY_MS = 150;

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
        // The projection takes an explained image once its heat map and prediction have been on screen for
        // PROJECTION_DELAY_MS: Plotly's redraw of every point would otherwise hold back what the user is looking at,
        // and images picked in quick succession redraw it once. A later image (or none) supersedes one waiting.
        projectionImage: function (reference) {
            explainState.projectionAsked = reference || null;
            if (!reference) {
                return null;
            }
            const image = "/" + reference.slice(reference.indexOf(":") + 1);
            const deadline = performance.now() + 3000;
            return new Promise((resolve) => {
                const wait = () => {
                    if (explainState.projectionAsked !== reference) {
                        resolve(window.dash_clientside.no_update);
                        return;
                    }
                    const base = document.getElementById("explain-base").getAttribute("src") || "";
                    const heat = document.getElementById("explain-heat");
                    const heatSource = heat.getAttribute("src") || "";
                    const shown = base.endsWith(image + ".png") && (!heatSource || (heatSource.includes(image + "/")
                                                                                    && heat.complete));
                    if (shown || performance.now() > deadline) {
                        setTimeout(() => resolve(explainState.projectionAsked === reference ? reference
                                                  : window.dash_clientside.no_update), PROJECTION_DELAY_MS);
                    } else {
                        requestAnimationFrame(wait);
                    }
                };
                requestAnimationFrame(wait);
            });
        },
        mirror: function (run, known, shownClass) {
            explainState.run = run;
            explainState.known = known || {};
            explainState.shownClass = shownClass;
            return window.dash_clientside.no_update;
        },
    },
});
