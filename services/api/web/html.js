// The one place that binds the vendored libraries: views import `html` and
// the hooks from here, so a library swap touches only this file.
import { h, render, Fragment } from './vendor/preact.module.js';
import htm from './vendor/htm.module.js';

export { render, Fragment };
export {
  useState, useEffect, useRef, useMemo, useCallback, useReducer, useLayoutEffect, useId,
} from './vendor/hooks.module.js';

/** JSX-like tagged templates without a build step: html`<p>${text}</p>`. */
export const html = htm.bind(h);
