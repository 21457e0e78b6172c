/**
 * The `noma` CodeMirror 6 stream parser: tokens, highlight tags and indentation.
 *
 * Owns: how NOMA source is split into tokens (keywords, builtins, optimizers and init policies,
 * cast types, numbers, strings, comments, operators, brackets, meta-command lines such as
 * `:params`), the highlight tag of each token, and the indentation of a line (one unit per
 * bracket `{ ( [` left open before it; a line that starts with a closer goes one unit back).
 * The word lists come from vocabulary.json, generated from the compiler's tables at build time
 * (gen_vocabulary.py), never copied by hand.
 */
import { StreamLanguage, StringStream, IndentContext } from '@codemirror/language';
import { Tag, tags } from '@lezer/highlight';

import vocabulary from './vocabulary.json';

export interface NomaState {
  /** Brackets left open before the current position (indentation depth). */
  depth: number;
  /** Inside a string that runs on (an unterminated string ends at the line's end). */
  inString: boolean;
  /** The previous word: `with` and `init` name an optimizer or a policy, `as` a type, `fn` a name. */
  previous: string;
}

const KEYWORDS = new Set<string>(vocabulary.keywords);
const BUILTINS = new Set<string>(vocabulary.builtins);
const OPTIMIZERS = new Set<string>(vocabulary.optimizers);
const POLICIES = new Set<string>(vocabulary.policies);
const TYPES = new Set<string>(vocabulary.types);
const META = new Set<string>(vocabulary.meta);
const DECLARING = new Set<string>(['let', 'learn', 'dim', 'alloc', 'realloc', 'free']);

/** Token names of the parser and their highlight tags. */
export const TOKEN_TABLE: { [name: string]: Tag } = {
  keyword: tags.keyword,
  builtin: tags.standard(tags.variableName),
  optimizer: tags.standard(tags.variableName),
  typeName: tags.typeName,
  number: tags.number,
  string: tags.string,
  comment: tags.lineComment,
  operator: tags.operator,
  bracket: tags.bracket,
  punctuation: tags.punctuation,
  meta: tags.meta,
  definition: tags.definition(tags.variableName),
  functionName: tags.function(tags.variableName),
  variable: tags.variableName
};

const OPERATOR = /^(\*\*|&&|\|\||==|!=|<=|>=|\.\.|[-+*/%^<>=!])/;
const NUMBER = /^(\d+\.\d+([eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)/;

function word(stream: StringStream, state: NomaState, text: string): string {
  const previous = state.previous;
  state.previous = text;
  const call = stream.match(/^\s*\(/, false) !== null;
  if (previous === 'with' && OPTIMIZERS.has(text)) {
    return 'optimizer';
  }
  if (previous === 'init' && POLICIES.has(text)) {
    return 'builtin';
  }
  if (previous === 'as' && TYPES.has(text)) {
    return 'typeName';
  }
  if (previous === 'fn') {
    return 'definition';
  }
  if (DECLARING.has(previous) && !KEYWORDS.has(text)) {
    return 'definition';
  }
  if (BUILTINS.has(text) && (call || !KEYWORDS.has(text))) {
    return 'builtin'; // `max(a, b)` is a builtin, `max 400` the iteration bound
  }
  if (KEYWORDS.has(text)) {
    return 'keyword';
  }
  return call ? 'functionName' : 'variable';
}

function string(stream: StringStream, state: NomaState): string {
  while (!stream.eol()) {
    const ch = stream.next();
    if (ch === '\\') {
      stream.next();
    } else if (ch === '"') {
      state.inString = false;
      return 'string';
    }
  }
  state.inString = false; // NOMA strings do not span lines
  return 'string';
}

function token(stream: StringStream, state: NomaState): string | null {
  if (state.inString) {
    return string(stream, state);
  }
  if (stream.sol()) {
    const meta = stream.match(/^\s*:([A-Za-z?]+)/, false) as RegExpMatchArray | null;
    if (meta && (META.has(meta[1]) || meta[1] === '?')) {
      stream.match(/^\s*:[A-Za-z?]+/);
      return 'meta';
    }
  }
  if (stream.eatSpace()) {
    return null;
  }
  if (stream.match('//')) {
    stream.skipToEnd();
    return 'comment';
  }
  if (stream.eat('"')) {
    state.inString = true;
    return string(stream, state);
  }
  if (stream.match(NUMBER)) {
    state.previous = '';
    return 'number';
  }
  const name = stream.match(/^[A-Za-z_]\w*/) as RegExpMatchArray | null;
  if (name) {
    return word(stream, state, name[0]);
  }
  const ch = stream.peek() ?? '';
  if ('{([' .includes(ch)) {
    stream.next();
    state.depth += 1;
    state.previous = '';
    return 'bracket';
  }
  if ('})]'.includes(ch)) {
    stream.next();
    state.depth = Math.max(0, state.depth - 1);
    state.previous = '';
    return 'bracket';
  }
  if (stream.match(OPERATOR)) {
    state.previous = '';
    return 'operator';
  }
  stream.next();
  state.previous = '';
  return 'punctuation';
}

function indent(state: NomaState, textAfter: string, context: IndentContext): number {
  const closers = /^\s*[}\])]/.test(textAfter) ? 1 : 0;
  return Math.max(0, state.depth - closers) * context.unit;
}

/** The `noma` language (a CodeMirror 6 StreamLanguage). */
export const nomaLanguage = StreamLanguage.define<NomaState>({
  name: 'noma',
  startState: () => ({ depth: 0, inString: false, previous: '' }),
  copyState: (s: NomaState) => ({ depth: s.depth, inString: s.inString, previous: s.previous }),
  token,
  indent,
  tokenTable: TOKEN_TABLE,
  languageData: {
    commentTokens: { line: '//' },
    closeBrackets: { brackets: ['(', '[', '{', '"'] },
    indentOnInput: /^\s*[}\])]$/,
    wordChars: '_'
  }
});
