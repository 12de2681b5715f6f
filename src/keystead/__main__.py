from keystead.cli.main import main

main()
