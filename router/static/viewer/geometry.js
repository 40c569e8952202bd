/* viewer/geometry.js: where the visitor's viewport sits in the agent's view, as a pure
 * function of sizes and scroll positions (no DOM): the scale (fit, or 1 at 100 %), the
 * visitor's viewport frame in the overlay's pixels, and the offset between the visitor's
 * scroll and the replica's (not zero when the agent does not follow the visitor's scroll,
 * or the replica's page is shorter). view.js draws it; actions.js and apply.js map points
 * with it. tests/browser/test_browser_view.py runs a table through it.
 */

/**
 * @typedef {Object} ViewInput
 * @property {number[]} stage          the agent's stage [w, h] in CSS px (0: unknown)
 * @property {number[]} viewport       the visitor's viewport [w, h]
 * @property {boolean} fit             scale to fit the stage (false: 100 %)
 * @property {number[]} visitorScroll  the visitor's window scroll [x, y]
 * @property {number[]} replicaScroll  the replica window's scroll [x, y]
 */

/** @param {ViewInput} g */
function viewGeometry(g) {
  const [vw, vh] = g.viewport;
  const [cw, ch] = g.stage;
  let scale = g.fit && cw > 0 && ch > 0 ? Math.min(cw / vw, ch / vh) : 1;
  if (!isFinite(scale) || scale <= 0) scale = 1;
  // The visitor's viewport relative to the agent's, in the replica's CSS px.
  const dx = g.visitorScroll[0] - g.replicaScroll[0];
  const dy = g.visitorScroll[1] - g.replicaScroll[1];
  return {
    scale,
    width: vw * scale,   // the replica (and overlay) as drawn
    height: vh * scale,
    offset: [dx, dy],
    frame: {x: dx * scale, y: dy * scale, w: vw * scale, h: vh * scale},
    where: frameWhere(dx, dy, vw, vh),
  };
}

/** "here" when any of the visitor's viewport shows in the agent's, else the side it is on
 * ("above", "below", "left", "right"): the frame's label says so. */
function frameWhere(dx, dy, vw, vh) {
  if (dy <= -vh) return "above";
  if (dy >= vh) return "below";
  if (dx <= -vw) return "left";
  if (dx >= vw) return "right";
  return "here";
}

/** A point in the replica's viewport (agent side) to the visitor's viewport. */
function replicaToVisitor(offset, p) {
  return {x: p.x - offset[0], y: p.y - offset[1]};
}

/** A point in the visitor's viewport to the replica's viewport. */
function visitorToReplica(offset, p) {
  return {x: p.x + offset[0], y: p.y + offset[1]};
}
