from dlx.cli.app import main

main()
