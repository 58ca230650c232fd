// Runs once in every isolate, before the script: builds the frozen `remit` object from
// the native bindings, a captured `console`, and a clock that does not move. Everything it
// uses is captured here, before the script can replace any built-in.
(function (natives, log, now) {
  "use strict";
  const O = Object;
  const freeze = O.freeze;
  const create = O.create;
  const defineProperty = O.defineProperty;
  const names = O.getOwnPropertyNames;
  const hasOwn = O.prototype.hasOwnProperty;
  const apply = Reflect.apply;
  const construct = Reflect.construct;
  const stringify = JSON.stringify;
  const join = Array.prototype.join;
  const ProxyCtor = Proxy;
  const StringCtor = String;
  const TypeErrorCtor = TypeError;
  const ErrorCtor = Error;
  const D = Date;
  const dateToString = D.prototype.toString;

  // Names a caller may probe without it being a mistake (`await remit`, JSON, inspection).
  const QUIET = ["then", "toJSON", "constructor", "valueOf", "toString", "inspect", "$$typeof"];

  function guard(target, prefix) {
    freeze(target);
    return new ProxyCtor(target, {
      get(t, k) {
        if (typeof k !== "string" || apply(hasOwn, t, [k])) {
          return t[k];
        }
        for (let i = 0; i < QUIET.length; i++) {
          if (QUIET[i] === k) {
            return undefined;
          }
        }
        throw new TypeErrorCtor(
          "unknown binding `" + prefix + k + "`; `" + apply(StringCtor.prototype.slice, prefix, [0, -1]) +
            "` has: " + apply(join, names(t), [", "]) + " (see `remit code api`)",
        );
      },
      set() {
        return false;
      },
      defineProperty() {
        return false;
      },
      deleteProperty() {
        return false;
      },
      setPrototypeOf() {
        return false;
      },
    });
  }

  const root = create(null);
  const spaces = create(null);
  const paths = names(natives);
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i];
    const fn = freeze(natives[path]);
    const dot = apply(StringCtor.prototype.indexOf, path, ["."]);
    if (dot < 0) {
      root[path] = fn;
      continue;
    }
    const ns = apply(StringCtor.prototype.slice, path, [0, dot]);
    const name = apply(StringCtor.prototype.slice, path, [dot + 1]);
    if (!spaces[ns]) {
      spaces[ns] = create(null);
    }
    spaces[ns][name] = fn;
  }
  const spaceNames = names(spaces);
  for (let i = 0; i < spaceNames.length; i++) {
    const ns = spaceNames[i];
    root[ns] = guard(spaces[ns], "remit." + ns + ".");
  }
  defineProperty(globalThis, "remit", {
    value: guard(root, "remit."),
    writable: false,
    enumerable: false,
    configurable: false,
  });

  function show(v) {
    if (typeof v === "string") {
      return v;
    }
    if (v === undefined) {
      return "undefined";
    }
    if (typeof v === "function") {
      return "[Function " + (v.name || "anonymous") + "]";
    }
    if (typeof v === "symbol" || typeof v === "bigint") {
      return StringCtor(v);
    }
    try {
      if (v instanceof ErrorCtor) {
        return StringCtor(v.name) + ": " + StringCtor(v.message) + (v.stack ? "\n" + StringCtor(v.stack) : "");
      }
      const s = stringify(v);
      return s === undefined ? StringCtor(v) : s;
    } catch (e) {
      try {
        return StringCtor(v);
      } catch (e2) {
        return "[unprintable]";
      }
    }
  }

  const consoleObject = create(null);
  const levels = ["log", "info", "warn", "error", "debug"];
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    consoleObject[level] = freeze(function (...args) {
      let line = "";
      for (let j = 0; j < args.length; j++) {
        if (j > 0) {
          line += " ";
        }
        line += show(args[j]);
      }
      log(level, line);
    });
  }
  defineProperty(globalThis, "console", {
    value: freeze(consoleObject),
    writable: false,
    enumerable: false,
    configurable: false,
  });

  // The clock reads the script's start and does not move: no timing channel.
  function FrozenDate(...args) {
    if (new.target === undefined) {
      return apply(dateToString, construct(D, [now]), []);
    }
    return construct(D, args.length ? args : [now], new.target);
  }
  FrozenDate.prototype = D.prototype;
  FrozenDate.now = function now_() {
    return now;
  };
  FrozenDate.parse = D.parse;
  FrozenDate.UTC = D.UTC;
  defineProperty(D.prototype, "constructor", { value: FrozenDate, writable: true, configurable: true });
  defineProperty(globalThis, "Date", { value: FrozenDate, writable: true, configurable: true });
  delete globalThis.performance;
});
