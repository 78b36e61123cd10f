"""The operator's terminal (Textual): a view over `takeover.teleop.session.OperatorSession`.

Import `takeover.teleop.tui.app` for the app; `takeover.teleop.tui.run` registers `takeover run`
without importing Textual, so the CLI starts fast.
"""
