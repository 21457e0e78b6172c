/**
 * jupyterlab-noma: registers the `noma` language with JupyterLab 4's editor language registry.
 *
 * Owns: the language's registration (name `noma`, mime type text/x-noma, the .noma extension:
 * the NOMA kernel's language_info names it, so notebook cells and .noma files use it), and the
 * editor extensions that come with it: bracket closing, and CSS classes on tokens (`tok-keyword`,
 * `tok-number`, `tok-comment`, `noma-builtin`, ...) besides the theme's colours, which the
 * browser tests (tests/browser) look for.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { closeBrackets } from '@codemirror/autocomplete';
import { LanguageSupport, syntaxHighlighting } from '@codemirror/language';
import { classHighlighter, tagHighlighter, tags } from '@lezer/highlight';

import { nomaLanguage } from './mode';

/** Classes of NOMA's own token kinds, on top of CodeMirror's `tok-*` classes. */
const nomaClasses = tagHighlighter([
  { tag: tags.standard(tags.variableName), class: 'noma-builtin' },
  { tag: tags.meta, class: 'noma-meta' }
]);

/** The `noma` language with its editor extensions. */
export function noma(): LanguageSupport {
  return new LanguageSupport(nomaLanguage, [
    closeBrackets(),
    syntaxHighlighting(classHighlighter),
    syntaxHighlighting(nomaClasses)
  ]);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-noma:language',
  description: 'The NOMA language for CodeMirror 6 in JupyterLab.',
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: (app: JupyterFrontEnd, languages: IEditorLanguageRegistry): void => {
    languages.addLanguage({
      name: 'noma',
      displayName: 'NOMA',
      mime: 'text/x-noma',
      extensions: ['noma'],
      support: noma()
    });
  }
};

export default plugin;
