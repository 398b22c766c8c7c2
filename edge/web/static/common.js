/* Shared by the alert page and the upload page: formatting and the region drawn over a film. */
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  append(node, ...children);
  return node;
}

function append(node, ...children) {
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
}

function fmtP(p) { return p === null || p === undefined ? "-" : p.toFixed(2); }
function fmtArea(f) {
  if (f.area_cm2 !== null && f.area_cm2 !== undefined) return f.area_cm2.toFixed(1) + " cm\u00b2";
  return (100 * (f.area_fraction || 0)).toFixed(1) + " % of image";
}
function fmtAgo(seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 60) return Math.round(seconds) + " s ago";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
  return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min ago";
}
function useWarning(intended) {
  if (intended === "validated") return "";
  if (intended === "demo") return "DEMO MODEL \u2014 NOT FOR CLINICAL USE";
  return "UNTRAINED MODEL \u2014 NOT FOR CLINICAL USE";
}
function modelsText(models) {
  return (models || []).map(m => m.name + " " + m.version + " (" + m.precision + ", " + m.backend + ")").join(" \u00b7 ");
}

/* A film: the overlay JPEG (banner strip on top, then the radiograph) with the
   region drawn as SVG from finding.contours, in original-image pixels, over
   the radiograph part only. Without a JPEG yet, a placeholder of the right shape. */
function buildFilm(alert, src) {
  const w = alert.image.width, h = alert.image.height;
  const film = el("div", {class: "film"});
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "region");
  for (const poly of (alert.finding.contours || [])) {
    const p = document.createElementNS(SVGNS, "polygon");
    p.setAttribute("points", poly.map(xy => xy[0] + "," + xy[1]).join(" "));
    svg.append(p);
  }
  const place = (stripPx, totalPx) => {
    svg.style.top = (100 * stripPx / totalPx) + "%";
    svg.style.height = (100 * (totalPx - stripPx) / totalPx) + "%";
  };
  if (src) {
    const img = el("img", {src: src, alt: "overlay of " + (alert.source.file_name || "the study")});
    img.addEventListener("load", () => {
      const radiographPx = img.naturalWidth * h / w;
      place(Math.max(0, img.naturalHeight - radiographPx), img.naturalHeight);
      film.classList.add("loaded");
    });
    film.append(img);
  } else {
    film.append(el("div", {class: "placeholder", style: "aspect-ratio: " + w + " / " + h, text: "image not received"}));
    place(0, 1);
  }
  film.append(svg);
  return film;
}

function applyRegionToggle(checkbox) {
  const apply = () => document.body.classList.toggle("hide-region", !checkbox.checked);
  checkbox.addEventListener("change", apply);
  apply();
}
