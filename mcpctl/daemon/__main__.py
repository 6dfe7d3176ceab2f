from mcpctl.daemon.main import main

main()
