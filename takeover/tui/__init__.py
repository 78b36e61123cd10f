"""The operator's terminal (Textual): a view over `takeover.session.operator.OperatorSession`.

Import `takeover.tui.app` for the app; `takeover.cli.run` registers `takeover run`
without importing Textual, so the CLI starts fast.
"""
